//! The `request_search` read model (DESIGN.md §5): full-text and trigram search over media
//! requests by title, year and requester's username.
//!
//! Fed from JetStream (public event forms). Besides `media_request` events the projection
//! reads `user_account` events (`registered`, `profile_updated`) into a small table of user
//! id → username, so each search row carries its requester's current name and follows
//! renames. Rows of both tables carry their aggregate `version`; an event only updates a
//! row whose version is below the event's sequence, a second guard (beside the checkpoint)
//! against applying an event twice.
//!
//! Ranking (see [`search`]): PostgreSQL full-text search with the `simple` configuration
//! (titles are names in any language: no stemming, no stop words) for whole-word matches,
//! plus pg_trgm similarity on the title and the requester for typos ("matrx" finds
//! "The Matrix"); an exact title match and a year named in the query weigh most.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaRequestEvent, MediaType, RequestStatus};
use medianest_domain::public::media_request_event;
use medianest_nats::FeedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::runner::{finish_row_update, public_event, row_update};
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "request_search";

/// The search rows' table.
const TABLE: &str = "request_search";

/// The user id → username table.
const USERS_TABLE: &str = "request_search_users";

/// Least `word_similarity` (0 to 1) between the query's words and a title or requester for
/// a trigram match. pg_trgm's default, 0.6, misses one wrong letter in a six-letter word
/// ("matrex" → "Matrix" scores 0.57); 0.5 already confuses five-letter words that share
/// their first three letters ("alice" → "Alien" scores 0.5).
pub const WORD_SIMILARITY_THRESHOLD: f64 = 0.55;

/// The `request_search` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchProjection;

#[async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request", "user_account"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE, USERS_TABLE]
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        if event.aggregate_type() == "user_account" {
            apply_account_event(tx, event).await
        } else {
            apply_request_event(tx, event).await
        }
    }
}

async fn apply_request_event(
    tx: &mut PgConnection,
    event: &FeedEvent,
) -> Result<(), ProjectionError> {
    let (id, decoded) = public_event(event, media_request_event)?;
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let MediaRequestEvent::Submitted {
        requested_by,
        media,
        ..
    } = decoded
    {
        // The requester's name, when their account is known (user ids are UUIDs; a
        // `system:` actor has none).
        let user_id = requested_by.as_str().parse::<Uuid>().ok();
        sqlx::query(
            "INSERT INTO request_search (id, version, status, media_type, title, year,
                requested_by, requester, created_at, updated_at, last_position)
             VALUES ($1, $2, 'pending', $3, $4, $5, $6,
                (SELECT username FROM request_search_users WHERE id = $7), $8, $8, $9)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(sequence)
        .bind(media.media_type.as_str())
        .bind(&media.title)
        .bind(media.year.map(i32::from))
        .bind(requested_by.as_str())
        .bind(user_id)
        .bind(time)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    // Every later event moves the version; most also change the status, with the same
    // transitions as the `requests` read model.
    let mut update = row_update(TABLE, sequence, time, position);
    let status = match decoded {
        MediaRequestEvent::Submitted { .. } => None,
        MediaRequestEvent::Forwarded { .. } => {
            update
                .push(", status = CASE WHEN status = 'approved' THEN 'forwarded' ELSE status END");
            None
        }
        MediaRequestEvent::Approved { .. } | MediaRequestEvent::Retried { .. } => {
            Some(RequestStatus::Approved)
        }
        MediaRequestEvent::Declined { .. } => Some(RequestStatus::Declined),
        MediaRequestEvent::Cancelled { .. } => Some(RequestStatus::Cancelled),
        MediaRequestEvent::ForwardFailed { .. } | MediaRequestEvent::Failed { .. } => {
            Some(RequestStatus::Failed)
        }
        MediaRequestEvent::Processing => Some(RequestStatus::Processing),
        MediaRequestEvent::PartiallyAvailable { .. } => Some(RequestStatus::PartiallyAvailable),
        MediaRequestEvent::Available { .. } => Some(RequestStatus::Available),
    };
    if let Some(status) = status {
        update.push(", status = ").push_bind(status.as_str());
    }
    finish_row_update(update, id, sequence, tx).await?;
    Ok(())
}

/// What the projection takes from an account event's public form.
enum AccountChange {
    /// `registered`: the first username.
    Registered { username: String },
    /// `profile_updated`: a new username, when it changed.
    ProfileUpdated { username: Option<String> },
    /// Any other account event: only the version moves.
    Other,
}

/// Decodes the public form (`data`) of a `user_account` event of type `event_type`.
fn account_change(event_type: &str, data: &Value) -> Result<AccountChange, serde_json::Error> {
    #[derive(Deserialize)]
    struct Registered {
        username: String,
    }
    #[derive(Deserialize)]
    struct ProfileUpdated {
        #[serde(default)]
        username: Option<String>,
    }
    Ok(match event_type {
        "registered" => AccountChange::Registered {
            username: Registered::deserialize(data)?.username,
        },
        "profile_updated" => AccountChange::ProfileUpdated {
            username: ProfileUpdated::deserialize(data)?.username,
        },
        _ => AccountChange::Other,
    })
}

async fn apply_account_event(
    tx: &mut PgConnection,
    event: &FeedEvent,
) -> Result<(), ProjectionError> {
    let (id, change) = public_event(event, account_change)?;
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    let renamed = match change {
        AccountChange::Registered { username } => {
            sqlx::query(
                "INSERT INTO request_search_users (id, version, username, updated_at, last_position)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(sequence)
            .bind(username)
            .bind(time)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            true
        }
        AccountChange::ProfileUpdated { username } => {
            let mut update = row_update(USERS_TABLE, sequence, time, position);
            let renamed = username.is_some();
            if let Some(username) = username {
                update.push(", username = ").push_bind(username);
            }
            finish_row_update(update, id, sequence, tx).await?;
            renamed
        }
        AccountChange::Other => {
            finish_row_update(
                row_update(USERS_TABLE, sequence, time, position),
                id,
                sequence,
                tx,
            )
            .await?;
            false
        }
    };
    if renamed {
        // From the table, not the event: a redelivered old event cannot bring back an old
        // name.
        sqlx::query(
            "UPDATE request_search AS r SET requester = u.username
             FROM request_search_users AS u
             WHERE u.id = $1 AND r.requested_by = $2 AND r.requester IS DISTINCT FROM u.username",
        )
        .bind(id)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct SearchRow {
    /// Request id.
    pub id: Uuid,
    /// Aggregate version the row reflects.
    pub version: i64,
    /// Wire status (`pending`, …).
    pub status: String,
    /// `movie` or `tv`.
    pub media_type: String,
    /// Title.
    pub title: String,
    /// Release year.
    pub year: Option<i32>,
    /// Requester's user id.
    pub requested_by: String,
    /// Requester's current username; `None` when the account is unknown.
    pub requester: Option<String>,
    /// When submitted.
    pub created_at: DateTime<Utc>,
    /// Last change of the request.
    pub updated_at: DateTime<Utc>,
    /// Global position of the last request event applied.
    pub last_position: i64,
}

/// A search result: the row and its relevance.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct SearchHit {
    /// The row.
    #[sqlx(flatten)]
    pub row: SearchRow,
    /// Relevance, higher is better (see [`search`]); rounded to 4 decimals.
    pub score: f64,
}

/// A search: the text and the filters; all filters optional.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// What the user typed (non-empty; the query API caps it at 200 characters).
    pub text: String,
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this media type.
    pub media_type: Option<MediaType>,
    /// Only this requester's requests (user id): the visibility of non-admins.
    pub requested_by: Option<String>,
}

/// Splits the 4-digit tokens (years, `(1999)` included) off `text`: answers the rest, the
/// words, and the years.
fn split_years(text: &str) -> (String, Vec<i32>) {
    let mut words = Vec::new();
    let mut years = Vec::new();
    for token in text.split_whitespace() {
        let bare = token.trim_matches(|c: char| !c.is_alphanumeric());
        match bare.parse::<i32>() {
            Ok(year) if bare.len() == 4 && bare.bytes().all(|b| b.is_ascii_digit()) => {
                years.push(year);
            }
            _ => words.push(token),
        }
    }
    (words.join(" "), years)
}

/// The search: `$1` the text, `$2` its words (`$1` without 4-digit tokens, or `$1` when it
/// is only years), `$3` the years, `$4` whether the text is only years, `$5` status, `$6`
/// media type, `$7` requester (each `NULL` for any), `$8` the limit.
const SEARCH_SQL: &str = r"
WITH q AS (
    SELECT websearch_to_tsquery('simple', $1) AS tsquery,
           lower(regexp_replace(btrim($1), '\s+', ' ', 'g')) AS text,
           lower(regexp_replace(btrim($2), '\s+', ' ', 'g')) AS words
)
SELECT id, version, status, media_type, title, year, requested_by, requester, created_at,
       updated_at, last_position,
       round((
           CASE WHEN lower(regexp_replace(btrim(title), '\s+', ' ', 'g')) = q.text
                  OR (lower(regexp_replace(btrim(title), '\s+', ' ', 'g')) = q.words
                      AND (cardinality($3::integer[]) = 0 OR year = ANY($3)))
                THEN 1 ELSE 0 END
           + similarity($2, title)
           + word_similarity($2, title)
           + ts_rank(document, q.tsquery)
           + 0.5 * coalesce(word_similarity($2, requester), 0)
           + CASE WHEN year = ANY($3) THEN 1 ELSE 0 END
       )::numeric, 4)::float8 AS score
FROM request_search, q
WHERE (document @@ q.tsquery
       OR $2 <% title
       OR $2 <% requester
       OR ($4 AND year = ANY($3)))
  AND ($5::text IS NULL OR status = $5)
  AND ($6::text IS NULL OR media_type = $6)
  AND ($7::text IS NULL OR requested_by = $7)
ORDER BY score DESC, id DESC
LIMIT $8
";

/// The matching requests, best first (ties: newest first), at most `limit`.
///
/// A row matches when any of these holds:
/// - full text: `websearch_to_tsquery('simple', text)` matches the title, requester and year
///   (quotes, `or` and `-word` work as on web search engines);
/// - trigrams: the words of the text (the text without its 4-digit tokens) are
///   word-similar ([`WORD_SIMILARITY_THRESHOLD`]) to the title or the requester;
/// - the text is only years, and the row's year is one of them.
///
/// The score adds: 1 for an exact title (case and spacing aside; with a year in the text,
/// only when the year matches too), `similarity` and `word_similarity` of the words and the
/// title (0 to 1 each: closer and shorter titles first), `ts_rank` of the full-text match,
/// half the requester's `word_similarity`, and 1 when the row's year is in the text.
///
/// # Errors
/// The database error.
pub async fn search(
    pool: &PgPool,
    query: &SearchQuery,
    limit: i64,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let text = query.text.trim();
    let (words, years) = split_years(text);
    // A text of years only ("1999", "1917") is also matched as words: "1917" is a title too.
    let (words, years_only) = if words.is_empty() {
        (text.to_string(), true)
    } else {
        (words, false)
    };
    let mut tx = pool.begin().await?;
    // Local to this transaction: the threshold of `<%`, which the trigram indexes serve.
    sqlx::query("SELECT set_config('pg_trgm.word_similarity_threshold', $1, true)")
        .bind(WORD_SIMILARITY_THRESHOLD.to_string())
        .execute(&mut *tx)
        .await?;
    let sql = sqlx::query_as(SEARCH_SQL)
        .bind(text)
        .bind(&words)
        .bind(&years)
        .bind(years_only)
        .bind(query.status.map(RequestStatus::as_str))
        .bind(query.media_type.map(MediaType::as_str))
        .bind(query.requested_by.as_deref())
        .bind(limit);
    let hits = sql.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(hits)
}

/// One request's search row, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<SearchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, version, status, media_type, title, year, requested_by, requester,
            created_at, updated_at, last_position
         FROM request_search WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The username the read model knows for user `id`.
///
/// # Errors
/// The database error.
pub async fn username<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT username FROM request_search_users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::split_years;

    #[test]
    fn years_are_split_off_the_words() {
        assert_eq!(
            split_years("the matrix 1999"),
            ("the matrix".into(), vec![1999])
        );
        assert_eq!(split_years("Matrix (2003)"), ("Matrix".into(), vec![2003]));
        assert_eq!(split_years("1999"), (String::new(), vec![1999]));
        assert_eq!(
            split_years("apollo 13 12345"),
            ("apollo 13 12345".into(), vec![])
        );
        assert_eq!(split_years("２０１９ x"), ("２０１９ x".into(), vec![]));
    }
}
