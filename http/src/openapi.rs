//! Shared pieces of the OpenAPI document served at `/api/openapi.json`: the problem schema,
//! the answers many routes share ([`SharedAnswers`]) and the route that serves the merged
//! document.
//!
//! Invariant: the document lists every status an operation can answer, each 4xx and 5xx
//! with an `application/problem+json` body. Statuses that follow from a route's shape (it
//! needs a session, reads input, takes `min_position`, `If-Match` or `Idempotency-Key`) are
//! added here, from one table; what only one route can answer (`downloads-disabled`,
//! `plex-sign-in-unavailable`, …) stays in that route's annotation.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required, Response};
use utoipa::{PartialSchema, ToSchema};

use crate::ProblemType;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the bearer security scheme routes refer to (`security(("bearer" = []))`).
pub const BEARER: &str = "bearer";

/// An RFC 9457 problem (`application/problem+json`); extension members vary by `type`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:medianest:problem:<slug>`, stable.
    #[schema(example = "urn:medianest:problem:duplicate-request")]
    pub r#type: String,
    /// Summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
}

/// Completes a merged document: declares the [`BEARER`] scheme and the [`Problem`] schema,
/// documents `X-Min-Position` beside every `min_position`, adds the shared answers
/// ([`SHARED`]) to every operation they apply to, and gives every 4xx and 5xx answer a
/// problem+json body.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedAnswers;

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .schemas
            .entry(Problem::name().into_owned())
            .or_insert_with(Problem::schema);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations_mut(item) {
                document_min_position(operation);
                for shared in SHARED {
                    if (shared.applies)(path, operation) {
                        add_answer(operation, shared);
                    }
                }
                problem_bodies(operation);
            }
        }
    }
}

/// One answer that every operation of a kind can give.
struct Shared {
    /// The problem type (its status and slug).
    problem: ProblemType,
    /// When this operation gives it.
    reason: &'static str,
    /// Which operations (path, operation) can give it.
    applies: fn(&str, &Operation) -> bool,
    /// Whether the answer carries `Retry-After`.
    retry_after: bool,
}

/// The answers that follow from an operation's shape, each proven by the code named:
/// the layers ([`crate::layers::apply`], [`crate::shed`]), the authenticator ([`crate::auth`],
/// [`crate::sessions`]), the extractors ([`crate::json`]), and the `min_position`,
/// `If-Match` and `Idempotency-Key` handling of the command and query crates.
const SHARED: &[Shared] = &[
    Shared {
        problem: ProblemType::MalformedRequest,
        reason: "the request cannot be read: an unknown query parameter, a bad parameter or \
                 header value, or a body that is not what this operation takes",
        applies: |_, operation| reads_input(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::UnknownMinPosition,
        reason: "no event has the position `min_position` (or `X-Min-Position`) names, \
                 e.g. it is beyond the head of the log: answered at once, since no wait can \
                 reach it",
        applies: |_, operation| takes_min_position(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::Unauthenticated,
        reason: "no valid session: no, unknown, expired or revoked token, or a disabled account",
        applies: |_, operation| is_secured(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::IdempotencyKeyInProgress,
        reason: "the first request with this `Idempotency-Key` is still running",
        applies: |_, operation| takes_idempotency_key(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::VersionMismatch,
        reason: "`If-Match` names another version than the current one, which \
                 `current_version` gives",
        applies: |_, operation| takes_if_match(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::BodyTooLarge,
        reason: "the body is over 64 KiB (the Plex webhook: 8 MiB), or its declared \
                 `Content-Length` is over 8 MiB",
        applies: |_, _| true,
        retry_after: false,
    },
    Shared {
        problem: ProblemType::UnsupportedMediaType,
        reason: "the body is not `application/json`",
        applies: |_, operation| takes_json(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::IdempotencyKeyReused,
        reason: "this `Idempotency-Key` was used with another request",
        applies: |_, operation| takes_idempotency_key(operation),
        retry_after: false,
    },
    Shared {
        problem: ProblemType::RateLimited,
        reason: "the caller is over the API rate limit",
        applies: |_, operation| is_secured(operation),
        retry_after: true,
    },
    Shared {
        problem: ProblemType::Internal,
        reason: "an unexpected failure on our side; the cause is logged, never sent",
        applies: |_, _| true,
        retry_after: false,
    },
    Shared {
        problem: ProblemType::Overloaded,
        reason: "the server is working on as many requests as it takes at once \
                 (`MEDIANEST_HTTP_MAX_IN_FLIGHT`)",
        applies: |path, _| !crate::shed::exempt(path),
        retry_after: true,
    },
    Shared {
        problem: ProblemType::Unavailable,
        reason: "the session store cannot be asked",
        applies: |_, operation| is_secured(operation),
        retry_after: true,
    },
    Shared {
        problem: ProblemType::Unavailable,
        reason: "the read model has not reached `min_position` within \
                 `MEDIANEST_MIN_POSITION_WAIT_MS`",
        applies: |_, operation| takes_min_position(operation),
        retry_after: true,
    },
];

/// Whether the operation takes a JSON body ([`crate::json::Json`] answers 415 to another
/// content type).
fn takes_json(operation: &Operation) -> bool {
    operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"))
}

/// Whether the operation needs a session (a non-empty security requirement).
fn is_secured(operation: &Operation) -> bool {
    operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement)
            .ok()
            .and_then(|v| v.as_object().map(|o| !o.is_empty()))
            .unwrap_or(false)
    })
}

fn has_parameter(operation: &Operation, location: ParameterIn, name: &str) -> bool {
    operation.parameters.iter().flatten().any(|parameter| {
        parameter.parameter_in == location && parameter.name.eq_ignore_ascii_case(name)
    })
}

/// Query parameters, headers (but `Authorization`, a webhook's secret: 401) and bodies are
/// read strictly (unknown query parameters included): what does not parse is a 400.
fn reads_input(operation: &Operation) -> bool {
    operation.request_body.is_some()
        || operation.parameters.iter().flatten().any(|parameter| {
            parameter.parameter_in == ParameterIn::Query
                || (parameter.parameter_in == ParameterIn::Header
                    && !parameter.name.eq_ignore_ascii_case("authorization"))
        })
}

fn takes_min_position(operation: &Operation) -> bool {
    has_parameter(operation, ParameterIn::Query, "min_position")
}

fn takes_if_match(operation: &Operation) -> bool {
    has_parameter(operation, ParameterIn::Header, "If-Match")
}

fn takes_idempotency_key(operation: &Operation) -> bool {
    has_parameter(operation, ParameterIn::Header, "Idempotency-Key")
}

/// The operations of a path.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A non-negative `int64` schema (positions).
fn position_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
}

/// `min_position` is a non-negative position; `X-Min-Position` is its header form (the
/// larger of the two wins).
fn document_min_position(operation: &mut Operation) {
    if !takes_min_position(operation) {
        return;
    }
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for parameter in parameters.iter_mut() {
        if parameter.parameter_in == ParameterIn::Query && parameter.name == "min_position" {
            parameter.schema = Some(position_schema().build().into());
        }
    }
    if !parameters.iter().any(|p| {
        p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("X-Min-Position")
    }) {
        parameters.push(
            ParameterBuilder::new()
                .name("X-Min-Position")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "`min_position` as a header (the larger of the two wins)",
                ))
                .schema(Some(position_schema()))
                .build(),
        );
    }
}

/// Adds `shared` to the operation's answers; an answer the route already lists keeps its
/// own description (the route-specific reasons), with this reason added.
fn add_answer(operation: &mut Operation, shared: &Shared) {
    let reason = format!("{} (`{}`)", shared.reason, shared.problem.slug());
    let answer = operation
        .responses
        .responses
        .entry(shared.problem.status().as_str().to_string())
        .or_insert_with(|| RefOr::T(Response::new("")));
    let RefOr::T(answer) = answer else {
        return;
    };
    let description = answer.description.trim();
    if description.is_empty() {
        answer.description = reason;
    } else if !description.contains(shared.reason) {
        answer.description = format!("{description}; {reason}");
    }
    if shared.retry_after {
        answer
            .headers
            .entry("Retry-After".to_string())
            .or_insert_with(|| {
                let mut header = Header::new(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                );
                header.description = Some("seconds to wait before trying again".to_string());
                header
            });
    }
}

/// Every 4xx and 5xx answer is problem+json.
fn problem_bodies(operation: &mut Operation) {
    for (status, answer) in operation.responses.responses.iter_mut() {
        let RefOr::T(answer) = answer else {
            continue;
        };
        if (status.starts_with('4') || status.starts_with('5'))
            && !answer.content.contains_key(PROBLEM_JSON)
        {
            answer.content.insert(
                PROBLEM_JSON.to_string(),
                Content::new(Some(Ref::from_schema_name(Problem::name()))),
            );
        }
    }
}

/// `GET /api/openapi.json`.
pub fn router(document: utoipa::openapi::OpenApi) -> Router {
    Router::new().route(
        "/api/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::{OperationBuilder, Parameter};
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{PathItem, PathsBuilder, ResponseBuilder};
    use utoipa::Modify;

    use super::*;

    fn document(operation: Operation) -> OpenApi {
        let mut document = OpenApi::default();
        document.paths = PathsBuilder::new()
            .path(
                "/thing",
                PathItem::new(utoipa::openapi::HttpMethod::Get, operation),
            )
            .build();
        SharedAnswers.modify(&mut document);
        document
    }

    fn operation(document: &OpenApi) -> &Operation {
        document.paths.paths["/thing"]
            .get
            .as_ref()
            .expect("GET /thing")
    }

    fn description(operation: &Operation, status: &str) -> String {
        match &operation.responses.responses[status] {
            RefOr::T(answer) => answer.description.clone(),
            RefOr::Ref(_) => panic!("{status} is inline"),
        }
    }

    fn query(name: &str) -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .build()
    }

    #[test]
    fn a_route_without_session_or_input_lists_only_what_every_route_can_answer() {
        let document = document(
            OperationBuilder::new()
                .response("200", ResponseBuilder::new().description("ok"))
                .build(),
        );
        let statuses: Vec<&str> = operation(&document)
            .responses
            .responses
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(statuses, ["200", "413", "500", "503"]);
        assert!(description(operation(&document), "503").contains("`overloaded`"));
    }

    #[test]
    fn routes_exempt_from_load_shedding_do_not_list_it() {
        let mut document = OpenApi::default();
        document.paths = PathsBuilder::new()
            .path(
                "/api/v1/webhooks/plex/{secret}",
                PathItem::new(
                    utoipa::openapi::HttpMethod::Post,
                    OperationBuilder::new()
                        .response("200", ResponseBuilder::new().description("ok"))
                        .build(),
                ),
            )
            .build();
        SharedAnswers.modify(&mut document);
        let operation = document.paths.paths["/api/v1/webhooks/plex/{secret}"]
            .post
            .as_ref()
            .expect("the webhook");
        assert!(!operation.responses.responses.contains_key("503"));
    }

    #[test]
    fn a_secured_route_taking_min_position_lists_its_shared_answers_and_keeps_its_own() {
        let document = document(
            OperationBuilder::new()
                .parameter(query("min_position"))
                .security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
                .response(
                    "503",
                    ResponseBuilder::new().description("nothing configured (`x-disabled`)"),
                )
                .build(),
        );
        let operation = operation(&document);
        for status in ["400", "401", "413", "429", "500", "503"] {
            assert!(
                operation.responses.responses.contains_key(status),
                "{status} listed"
            );
        }
        let unavailable = description(operation, "503");
        assert!(
            unavailable.starts_with("nothing configured (`x-disabled`); "),
            "{unavailable}"
        );
        assert!(unavailable.contains("session store"), "{unavailable}");
        assert!(unavailable.contains("`min_position`"), "{unavailable}");
        let header = operation
            .parameters
            .iter()
            .flatten()
            .find(|p| p.name == "X-Min-Position")
            .expect("X-Min-Position documented");
        assert!(header.parameter_in == ParameterIn::Header);
        let RefOr::T(answer) = &operation.responses.responses["401"] else {
            panic!("inline");
        };
        assert!(answer.content.contains_key(PROBLEM_JSON));
    }
}
