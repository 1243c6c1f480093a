//! The public form of stored events: what leaves PostgreSQL for NATS and the live stream.
//!
//! Sensitive fields (token hashes, IPs, user agents, password hashes, emails) never leave the
//! store, so the public form of each aggregate's events is written explicitly here rather than
//! derived from the stored payload wholesale (DESIGN.md §4).

use serde_json::Value;

use crate::media_request::MediaRequestEvent;

/// Why a stored event has no public form.
#[derive(Debug, thiserror::Error)]
pub enum PublicFormError {
    /// The aggregate type is not one this version knows.
    #[error("unknown aggregate type `{0}`")]
    UnknownAggregate(String),
    /// The payload does not deserialize as an event of the aggregate.
    #[error("undecodable {aggregate_type} payload: {source}")]
    Payload {
        /// The aggregate type.
        aggregate_type: String,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// The public `data` of a stored event: `payload` is the `payload` column
/// (`{"<event_type>": {...}}`), the answer the event's fields as integrators see them.
///
/// # Errors
/// [`PublicFormError`] for an unknown aggregate type or an undecodable payload.
pub fn public_data(aggregate_type: &str, payload: &Value) -> Result<Value, PublicFormError> {
    match aggregate_type {
        "media_request" => {
            // Every field of a media request event is public.
            let event: MediaRequestEvent =
                serde_json::from_value(payload.clone()).map_err(|source| {
                    PublicFormError::Payload {
                        aggregate_type: aggregate_type.to_string(),
                        source,
                    }
                })?;
            Ok(inner(serde_json::to_value(event).unwrap_or(Value::Null)))
        }
        other => Err(PublicFormError::UnknownAggregate(other.to_string())),
    }
}

/// `{"submitted": {...}}` → `{...}`; a unit variant (`"processing"`) → `{}`.
fn inner(externally_tagged: Value) -> Value {
    match externally_tagged {
        Value::Object(map) if map.len() == 1 => map
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Value::Null),
        _ => Value::Object(Default::default()),
    }
}

/// Decodes a `media_request` event from its public form (`data` of a CloudEvent).
///
/// # Errors
/// The decoding error when `data` is not an event of type `event_type`.
pub fn media_request_event(
    event_type: &str,
    data: &Value,
) -> Result<MediaRequestEvent, serde_json::Error> {
    let mut tagged = serde_json::Map::new();
    tagged.insert(event_type.to_string(), data.clone());
    serde_json::from_value(Value::Object(tagged)).or_else(|error| match data {
        // Unit variants (`processing`) are stored as a bare string.
        Value::Object(map) if map.is_empty() => {
            serde_json::from_value(Value::String(event_type.to_string()))
        }
        _ => Err(error),
    })
}
