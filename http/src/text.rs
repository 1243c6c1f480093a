//! Text PostgreSQL can store, checked at the edge (issue 12, item 6).
//!
//! PostgreSQL's `text` and `jsonb` cannot hold U+0000 (NUL), and every string the API keeps
//! ends up in one of them: events and their metadata, read models, stored idempotent
//! answers. A NUL that reached a handler would fail there, as a 500, after the handler had
//! perhaps done part of its work. So text that PostgreSQL cannot store — a NUL, or bytes
//! that are not UTF-8 — is refused before any handler reads it, with 400 `invalid-text`
//! ([`ApiError::invalid_text`]) naming the field:
//!
//! - the URL: every path segment and every query parameter, name and value, once
//!   percent-decoded ([`refuse_unstorable_uri`], a layer on every route: [`crate::layers`]);
//! - JSON bodies: every string value and every object key, at any depth ([`check_json`],
//!   called by every body decoder of [`crate::json`] and by the Plex webhook's `payload`
//!   part).
//!
//! Headers need no check here. hyper refuses a NUL or another control byte in a header with
//! a bare 400 before any route sees the request, and MediaNest reads header values only as
//! visible ASCII (`HeaderValue::to_str`): a value that is not is refused where it carries
//! meaning (`Idempotency-Key`, `If-Match`, `Last-Event-ID`, `X-Min-Position`) and ignored
//! where it is only informational (`User-Agent`, the `X-Plex-*` device headers,
//! `X-Request-Id`, `X-Correlation-Id`, `traceparent`). Their size is bounded by
//! [`crate::layers::MAX_HEADER_BYTES`].

use std::fmt;

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::ApiError;

/// Why a piece of text cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// It holds U+0000.
    Nul,
    /// Its bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nul => "holds a NUL character (U+0000), which MediaNest cannot store",
            Self::NotUtf8 => "is not valid UTF-8 once percent-decoded",
        })
    }
}

/// Whether a percent-encoded URL component decodes to storable text.
fn url_component(raw: &str) -> Result<(), Flaw> {
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    let text = std::str::from_utf8(&decoded).map_err(|_| Flaw::NotUtf8)?;
    if text.contains('\0') {
        Err(Flaw::Nul)
    } else {
        Ok(())
    }
}

/// A query parameter's name as a reader should see it: form-decoded, invalid UTF-8 as
/// U+FFFD and NUL as `\0`.
fn shown_name(raw: &str) -> String {
    let raw = raw.replace('+', " ");
    String::from_utf8_lossy(&percent_decode_str(&raw).collect::<Vec<u8>>()).replace('\0', "\\0")
}

/// Checks the URL's path and query (`application/x-www-form-urlencoded`, names and values).
///
/// # Errors
/// 400 `invalid-text` with `field` = `path` or the query parameter's name.
pub fn check_uri(uri: &Uri) -> Result<(), ApiError> {
    url_component(uri.path())
        .map_err(|flaw| ApiError::invalid_text("path", format!("the URL path {flaw}")))?;
    let pairs = uri.query().unwrap_or_default().split('&');
    for pair in pairs.filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let field = shown_name(name);
        url_component(name).map_err(|flaw| {
            ApiError::invalid_text(
                &field,
                format!("the name of the query parameter `{field}` {flaw}"),
            )
        })?;
        url_component(value).map_err(|flaw| {
            ApiError::invalid_text(&field, format!("the query parameter `{field}` {flaw}"))
        })?;
    }
    Ok(())
}

/// Middleware answering 400 `invalid-text` (see [`check_uri`]) before the route runs.
pub async fn refuse_unstorable_uri(request: Request, next: Next) -> Response {
    match check_uri(request.uri()) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// Where in a JSON document a NUL was found.
struct Found {
    /// The keys and indices leading to it.
    path: Vec<String>,
    /// Whether it is in an object key (else in a string value).
    in_key: bool,
}

fn find_nul(value: &Value, path: &mut Vec<String>) -> Option<Found> {
    match value {
        Value::String(s) if s.contains('\0') => Some(Found {
            path: path.clone(),
            in_key: false,
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            path.push(index.to_string());
            let found = find_nul(item, path);
            path.pop();
            found
        }),
        Value::Object(members) => members.iter().find_map(|(key, item)| {
            path.push(key.replace('\0', "\\0"));
            let found = if key.contains('\0') {
                Some(Found {
                    path: path.clone(),
                    in_key: true,
                })
            } else {
                find_nul(item, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

/// Checks every string value and object key of a JSON body, at any depth (serde_json
/// already refuses bodies that are not UTF-8, or hold lone surrogates, as malformed).
///
/// # Errors
/// 400 `invalid-text` with `field` = the path to the string, keys and array indices joined
/// by `.` (`title`, `Metadata.Guid.0.id`), a NUL in a key shown as `\0`.
pub fn check_json(value: &Value) -> Result<(), ApiError> {
    let Some(found) = find_nul(value, &mut Vec::new()) else {
        return Ok(());
    };
    let field = if found.path.is_empty() {
        "body".to_string()
    } else {
        found.path.join(".")
    };
    let what = if found.in_key {
        "the key"
    } else {
        "the value of"
    };
    Err(ApiError::invalid_text(
        &field,
        format!("{what} `{field}` {}", Flaw::Nul),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused_field(result: Result<(), ApiError>) -> Option<String> {
        result.err().map(|problem| {
            assert_eq!(problem.slug(), "invalid-text");
            assert_eq!(problem.status(), 400);
            assert!(!problem.detail.contains('\0'), "{}", problem.detail);
            problem.extensions["field"].as_str().unwrap().to_string()
        })
    }

    fn uri_field(uri: &str) -> Option<String> {
        refused_field(check_uri(&uri.parse().unwrap()))
    }

    #[test]
    fn a_nul_in_a_json_value_or_key_at_any_depth_is_refused_naming_the_field() {
        let cases = [
            (json!({"title": "a\u{0}b"}), "title"),
            (json!({"a": {"b": [1, "x", "\u{0}"]}}), "a.b.2"),
            (json!({"ti\u{0}tle": "x"}), "ti\\0tle"),
            (json!({"a": [{"k\u{0}": 1}]}), "a.0.k\\0"),
        ];
        for (value, field) in cases {
            assert_eq!(
                refused_field(check_json(&value)).as_deref(),
                Some(field),
                "{value}"
            );
        }
    }

    #[test]
    fn json_without_a_nul_passes_whatever_else_it_holds() {
        let value = json!({"title": "Amélie 🎬 \\0 \u{1}", "n": null, "a": [1.5, true]});
        assert!(check_json(&value).is_ok());
    }

    #[test]
    fn a_nul_or_invalid_utf8_in_a_query_name_or_value_or_the_path_is_refused() {
        let cases = [
            ("/api/v1/downloads?requested_by=a%00b", "requested_by"),
            ("/api/v1/downloads?limit=5&requested_by=%FF", "requested_by"),
            ("/api/v1/downloads?re%00q=1", "re\\0q"),
            ("/api/v1/downloads?%C3=1", "\u{FFFD}"),
            ("/api/v1/requests/%00/approve", "path"),
            ("/api/v1/requests/%E2%82/approve", "path"),
        ];
        for (uri, field) in cases {
            assert_eq!(uri_field(uri).as_deref(), Some(field), "{uri}");
        }
    }

    #[test]
    fn ordinary_urls_pass() {
        for uri in [
            "/api/v1/requests",
            "/api/v1/requests?status=pending&limit=5",
            "/api/v1/search?q=Am%C3%A9lie+%F0%9F%8E%AC&",
            "/api/v1/search?q=100%25&flag",
            "/api/v1/search?q=%zz",
        ] {
            assert_eq!(uri_field(uri), None, "{uri}");
        }
    }
}
