//! What the list routes share: the `min_position` query parameter of every read, the page
//! size rule, and one keyset page of a read model (wait for `min_position`, fetch one row
//! more than the page to know whether another follows, cut, and give the next page's cursor).
//!
//! Each list route keeps its own parameter struct (its filters differ, and a flattened
//! struct cannot refuse unknown parameters), and hands the paging fields here.

use std::future::Future;

use axum::http::HeaderMap;
use medianest_domain::Actor;
use medianest_http::ApiError;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::{wait_for_position, QueryState};

/// Largest page size.
pub const MAX_LIMIT: i64 = 100;
/// Default page size.
pub const DEFAULT_LIMIT: i64 = 25;

/// The query parameters of a read that only waits for a position (`GET …/{id}`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadParams {
    /// Wait until the read model has this position.
    #[serde(default)]
    #[param(value_type = i64)]
    pub(crate) min_position: Option<i64>,
}

/// The paging parameters of a list route: the cursor, the page size and the position to
/// wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paging {
    /// `next_cursor` of the previous page: the page starts after this id.
    pub(crate) cursor: Option<Uuid>,
    /// The page size asked for ([`page_limit`]).
    pub(crate) limit: Option<i64>,
    /// The position the read model must have reached.
    pub(crate) min_position: Option<i64>,
}

impl Paging {
    /// The paging parameters as a list route received them.
    pub(crate) fn new(cursor: Option<Uuid>, limit: Option<i64>, min_position: Option<i64>) -> Self {
        Self {
            cursor,
            limit,
            min_position,
        }
    }
}

/// One page of rows, and the cursor of the next page when there is one.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// At most the page size of rows, in the read model's order.
    pub(crate) rows: Vec<T>,
    /// The id of the page's last row, when more rows follow.
    pub(crate) next_cursor: Option<Uuid>,
}

/// A filter parameter parsed into its type (`status`, `media_type`): absent is no filter.
///
/// # Errors
/// 400 `malformed-request` with the type's own message for a value it does not know.
pub(crate) fn filter<T: std::str::FromStr>(value: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: Into<String>,
{
    value
        .map(str::parse::<T>)
        .transpose()
        .map_err(ApiError::malformed)
}

/// The requester a list is filtered to: whom an admin asked for (or everyone), the caller
/// themselves for anyone else — non-admins only ever list their own.
pub(crate) fn own_unless_admin(caller: &Actor, asked: Option<String>) -> Option<String> {
    if caller.is_admin() {
        asked
    } else {
        Some(caller.id.to_string())
    }
}

/// The page size of a list: `limit` from 1 to [`MAX_LIMIT`] (100), default
/// [`DEFAULT_LIMIT`] (25).
///
/// # Errors
/// 400 `malformed-request` outside that range.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::malformed("limit must be between 1 and 100"))
    }
}

/// One page of read model `projection`: checks the page size, waits for `min_position`,
/// then `fetch(cursor, rows)` reads `rows` rows (the page size plus one) after `cursor`,
/// and `id` names each row for the next page's cursor.
///
/// # Errors
/// 400 for a bad page size or position, 503 when the read model does not reach the position
/// in time, 500 when the read fails.
pub(crate) async fn read_page<T, Fut>(
    state: &QueryState,
    projection: &str,
    paging: Paging,
    headers: &HeaderMap,
    fetch: impl FnOnce(Option<Uuid>, i64) -> Fut,
    id: impl Fn(&T) -> Uuid,
) -> Result<Page<T>, ApiError>
where
    Fut: Future<Output = Result<Vec<T>, sqlx::Error>>,
{
    let limit = page_limit(paging.limit)?;
    wait_for_position(state, projection, paging.min_position, headers).await?;
    let mut rows = fetch(paging.cursor, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(&id)
    } else {
        None
    };
    Ok(Page { rows, next_cursor })
}
