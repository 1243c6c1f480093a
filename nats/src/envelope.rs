//! The CloudEvents 1.0 structured-mode JSON envelope of a published event, and the NATS
//! headers beside it.
//!
//! Body: `specversion, id, source, type, subject, time, datacontenttype, data` plus the
//! extensions `sequence` (aggregate version, integer), `position` (global position, integer),
//! `correlationid`, `causationid` (docs/design.md §4). `data` is the event's public form
//! ([`medianest_domain::public::public_data`]), never the stored payload.

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use medianest_domain::public::{public_data, PublicFormError};
use medianest_store::{Cursor, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Header with the JetStream de-duplication id, `<aggregate_type>:<aggregate_id>:<sequence>`.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Header with the writing transaction id (with `position`, the global-log cursor).
pub const TX_ID: &str = "Medianest-Tx-Id";
/// Header with the global position.
pub const POSITION: &str = "Medianest-Position";
/// Header with the correlation id.
pub const CORRELATION_ID: &str = "Medianest-Correlation-Id";
/// Header with the HTTP request id, when the event came from one.
pub const REQUEST_ID: &str = "Medianest-Request-Id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A CloudEvents 1.0 event in structured JSON mode, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// `<aggregate_type>:<aggregate_id>:<sequence>`, unique per event.
    pub id: String,
    /// `/medianest/<aggregate_type>`.
    pub source: String,
    /// `medianest.<aggregate_type>.<event_type>.v<major>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate id.
    pub subject: String,
    /// When the event was recorded (RFC 3339).
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The public form of the event.
    pub data: Value,
    /// Extension: the aggregate version after this event.
    pub sequence: i64,
    /// Extension: the global position.
    pub position: i64,
    /// Extension: correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Extension: causation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
}

impl CloudEvent {
    /// The envelope of a stored event.
    ///
    /// # Errors
    /// [`PublicFormError`] when the event has no public form (unknown aggregate type or an
    /// undecodable payload).
    pub fn from_stored(event: &StoredEvent) -> Result<Self, PublicFormError> {
        let major = event
            .event_version
            .split('.')
            .next()
            .unwrap_or("1")
            .to_string();
        Ok(Self {
            specversion: "1.0".to_string(),
            id: event.event_id(),
            source: format!("/medianest/{}", event.aggregate_type),
            event_type: format!(
                "medianest.{}.{}.v{major}",
                event.aggregate_type, event.event_type
            ),
            subject: event.aggregate_id.clone(),
            time: event.recorded_at,
            datacontenttype: "application/json".to_string(),
            data: public_data(&event.aggregate_type, &event.payload)?,
            sequence: event.sequence,
            position: event.position,
            correlationid: event.metadata_str("correlation_id").map(str::to_string),
            causationid: event.metadata_str("causation_id").map(str::to_string),
        })
    }

    /// `(aggregate_type, event_type)` parsed from `type`.
    pub fn kind(&self) -> Option<(&str, &str)> {
        let mut parts = self.event_type.split('.');
        let _medianest = parts.next()?;
        let aggregate_type = parts.next()?;
        let event_type = parts.next()?;
        Some((aggregate_type, event_type))
    }
}

/// The NATS headers of a stored event.
pub fn headers(event: &StoredEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, event.event_id().as_str());
    headers.insert(TX_ID, event.tx_id.to_string().as_str());
    headers.insert(POSITION, event.position.to_string().as_str());
    headers.insert("Content-Type", "application/cloudevents+json");
    for (header, key) in [
        (CORRELATION_ID, "correlation_id"),
        (REQUEST_ID, "request_id"),
        (TRACEPARENT, "traceparent"),
    ] {
        if let Some(value) = event.metadata_str(key) {
            headers.insert(header, value);
        }
    }
    headers
}

/// The global-log cursor carried in a message's headers.
pub fn cursor_from_headers(headers: Option<&HeaderMap>) -> Option<Cursor> {
    let headers = headers?;
    let tx_id = headers.get(TX_ID)?.as_str().parse().ok()?;
    let position = headers.get(POSITION)?.as_str().parse().ok()?;
    Some(Cursor { tx_id, position })
}
