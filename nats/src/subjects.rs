//! The subject scheme: `<prefix>.events.<aggregate_type>.<aggregate_id>.<event_type>` for
//! events and `<prefix>.progress.<aggregate_type>.<aggregate_id>` for progress messages.

/// Subject builder for one deployment's prefix (`MEDIANEST_SUBJECT_PREFIX`, default
/// `medianest`; tests use a unique prefix each so they can share a server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix` (one or more dot-separated tokens, no wildcards).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of one event.
    pub fn event(&self, aggregate_type: &str, aggregate_id: &str, event_type: &str) -> String {
        format!(
            "{}.events.{aggregate_type}.{aggregate_id}.{event_type}",
            self.prefix
        )
    }

    /// Every event: `<prefix>.events.>` (the stream's subject).
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Every event of one aggregate type.
    pub fn aggregate_events(&self, aggregate_type: &str) -> String {
        format!("{}.events.{aggregate_type}.>", self.prefix)
    }

    /// Core-NATS progress subject of one aggregate (not persisted).
    pub fn progress(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!("{}.progress.{aggregate_type}.{aggregate_id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_follow_the_scheme() {
        let subjects = Subjects::new("medianest");
        assert_eq!(
            subjects.event("media_request", "0193", "available"),
            "medianest.events.media_request.0193.available"
        );
        assert_eq!(subjects.all_events(), "medianest.events.>");
        assert_eq!(
            subjects.aggregate_events("download"),
            "medianest.events.download.>"
        );
        assert_eq!(
            subjects.progress("download", "42"),
            "medianest.progress.download.42"
        );
    }
}
