//! The metadata written beside every event (docs/design.md §2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// `correlation_id`, `causation_id`, `actor`, `request_id`, `traceparent` of an event.
///
/// The correlation id follows one user action through every worker; the causation id names
/// what caused this event directly (the HTTP request id, or the id of the triggering event,
/// `<aggregate_type>:<aggregate_id>:<sequence>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Shared by everything that follows from one user action.
    pub correlation_id: String,
    /// What directly caused this event.
    pub causation_id: Option<String>,
    /// A user id or `system:<worker>`.
    pub actor: String,
    /// The HTTP request id, when the command came over HTTP.
    pub request_id: Option<String>,
    /// W3C trace context of the caller, when known.
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// Metadata for a worker reacting to the event `cause_id`, keeping its correlation id.
    pub fn caused_by(worker: &str, cause_id: &str, correlation_id: Option<&str>) -> Self {
        Self {
            correlation_id: correlation_id.unwrap_or(cause_id).to_string(),
            causation_id: Some(cause_id.to_string()),
            actor: format!("system:{worker}"),
            request_id: None,
            traceparent: None,
        }
    }

    /// Metadata of a command `actor` issues on its own (a new correlation id).
    pub fn for_actor(actor: &str) -> Self {
        Self {
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: None,
            actor: actor.to_string(),
            request_id: None,
            traceparent: None,
        }
    }

    /// Metadata of worker `worker` acting on its own (a polling or sync pass, not an event),
    /// with the pass's `correlation_id`.
    pub fn for_pass(worker: &str, correlation_id: &str) -> Self {
        Self {
            correlation_id: correlation_id.to_string(),
            causation_id: None,
            actor: format!("system:{worker}"),
            request_id: None,
            traceparent: None,
        }
    }

    /// The map stored in the `metadata` column (absent values are left out).
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert("correlation_id".to_string(), self.correlation_id.clone());
        map.insert("actor".to_string(), self.actor.clone());
        for (key, value) in [
            ("causation_id", &self.causation_id),
            ("request_id", &self.request_id),
            ("traceparent", &self.traceparent),
        ] {
            if let Some(value) = value {
                map.insert(key.to_string(), value.clone());
            }
        }
        map
    }
}
