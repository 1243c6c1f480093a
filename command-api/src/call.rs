//! What every command on an existing aggregate (`POST …/{id}/<command>`) reads from its
//! request, as one extractor, the headers those routes document, and [`command_route!`],
//! which writes such a route's handler and OpenAPI operation from what differs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use medianest_domain::Actor;
use medianest_http::Caller;
use utoipa::IntoParams;

use crate::CommandState;

/// A command call: the caller (authenticated first, as every route does), the `{id}` path
/// segment as sent (each route decides what an unreadable id answers), the headers
/// (`If-Match`, `Idempotency-Key`, the metadata's ids) and the raw body (each command reads
/// it strictly).
#[derive(Debug)]
pub(crate) struct CommandCall {
    /// Who calls.
    pub(crate) caller: Actor,
    /// The `{id}` segment.
    pub(crate) id: String,
    /// The request's headers.
    pub(crate) headers: HeaderMap,
    /// The request's body.
    pub(crate) body: Bytes,
}

impl FromRequest<CommandState> for CommandCall {
    type Rejection = Response;

    async fn from_request(request: Request, state: &CommandState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Caller(caller) = Caller::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(id) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            caller,
            id,
            headers,
            body,
        })
    }
}

/// The headers of a command on an existing aggregate (documentation only: the handlers read
/// them from [`CommandCall::headers`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "read by the OpenAPI derive only")]
pub(crate) struct CommandHeaders {
    /// Expected version, e.g. `"2"`: the command applies only to that version (412
    /// otherwise).
    #[param(rename = "If-Match", value_type = String)]
    if_match: Option<String>,
    /// Makes the call repeatable: the same key and body answer the first answer again.
    #[param(rename = "Idempotency-Key", value_type = String)]
    idempotency_key: Option<String>,
}

/// One command route on an existing aggregate: `$name`, documented as `POST $path` (with the
/// `{id}` parameter, [`CommandHeaders`], an optional body of type `$body` and `$answers`),
/// hands the [`CommandCall`] to the module's `act(state, call, $action)`.
macro_rules! command_route {
    (
        $(#[doc = $doc:literal])*
        $name:ident => $action:expr,
        path = $path:literal,
        tag = $tag:literal,
        id = $id:literal,
        $(body = $body:ty,)?
        answers = [$($answer:tt)*] $(,)?
    ) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = $tag,
            params(("id" = Uuid, Path, description = $id), CommandHeaders),
            $(request_body(content = Option<$body>),)?
            responses($($answer)*),
            security(("bearer" = []))
        )]
        pub(crate) async fn $name(
            axum::extract::State(state): axum::extract::State<crate::CommandState>,
            call: crate::call::CommandCall,
        ) -> axum::response::Response {
            act(&state, call, $action).await
        }
    };
}
pub(crate) use command_route;
