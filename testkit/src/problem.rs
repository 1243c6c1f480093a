//! Assertions on RFC 9457 problem documents, shared by the bad-input and end-to-end tests.

use reqwest::header::{HeaderName, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use reqwest::Response;
use serde_json::Value;

/// The media type of every MediaNest error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json answer, with the headers tests look at.
#[derive(Debug)]
pub struct Problem {
    /// The document.
    pub body: Value,
    /// `Retry-After` in seconds, when present.
    pub retry_after: Option<u64>,
    /// Whether the answer set a cookie.
    pub sets_cookie: bool,
}

/// Asserts that `response` is a problem+json document with `status`, type
/// `urn:medianest:problem:<slug>`, a `title` and a non-empty `detail`, and returns it.
///
/// # Panics
/// With `case` in the message when any of that does not hold.
pub async fn assert_problem(case: &str, response: Response, status: u16, slug: &str) -> Problem {
    let actual_status = response.status().as_u16();
    let header = |name: HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE);
    let retry_after = header(RETRY_AFTER).and_then(|v| v.parse::<u64>().ok());
    let sets_cookie = header(SET_COOKIE).is_some();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual_status, status, "{case}: status (body: {text})");
    assert_eq!(
        content_type.as_deref(),
        Some(PROBLEM_JSON),
        "{case}: content type (body: {text})"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{case}: the problem is JSON ({e}): {text}"));
    assert_eq!(
        body["type"],
        format!("urn:medianest:problem:{slug}"),
        "{case}: {body}"
    );
    assert_eq!(body["status"], status, "{case}: {body}");
    assert!(body["title"].is_string(), "{case}: title in {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{case}: a detail in {body}"
    );
    Problem {
        body,
        retry_after,
        sets_cookie,
    }
}
