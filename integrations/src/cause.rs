//! What the clients' errors keep of their causes (docs/decisions.md, "Errors keep their
//! cause"): the error value itself, as the variant's `source()`, never only its text.
//!
//! A variant whose causes are of several types holds a [`BoxError`] (or a [`SharedError`]
//! when the error must be `Clone`); a cause that needs to say what was being done is wrapped
//! in a [`Context`]; a variant whose cause is sometimes only a sentence boxes the sentence
//! (`"…".into()`). Displays keep the cause's text after a colon, so a log line written with
//! `%error` stays complete.

use std::error::Error;
use std::sync::Arc;

/// A cause of any error type (or a sentence), boxed.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A cause of any error type (or a sentence), shared: for errors that are `Clone`.
pub type SharedError = Arc<dyn Error + Send + Sync + 'static>;

/// `error` (an error value or a sentence) as a [`SharedError`].
pub fn shared(error: impl Into<BoxError>) -> SharedError {
    Arc::from(error.into())
}

/// A cause with what was being done when it happened: `<what>: <cause>`, the cause being
/// the `source()`.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Context {
    /// What was being done (e.g. "creating /downloads/.medianest").
    pub what: String,
    /// The cause.
    #[source]
    pub source: BoxError,
}

impl Context {
    /// `source` met while doing `what`.
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The error and its sources, so "connection refused" is not hidden behind "error sending
/// request".
pub(crate) fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_displays_what_and_the_cause_and_keeps_the_cause_as_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Context::new("creating /x", io);
        assert_eq!(error.to_string(), "creating /x: no such file");
        let source = error.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("no such file"));
    }
}
