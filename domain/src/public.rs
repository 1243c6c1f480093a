//! The public form of stored events: what leaves PostgreSQL for NATS and the live stream.
//!
//! Sensitive fields (token hashes, IPs, user agents, password hashes, emails) never leave the
//! store, so the public form of each aggregate's events is written explicitly here rather than
//! derived from the stored payload wholesale (docs/design.md §4).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::download::DownloadEvent;
use crate::media_request::MediaRequestEvent;
use crate::user_account::{SignInMethod, UserAccountEvent};
use crate::user_session::UserSessionEvent;

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
        // Every field of a media request event is public.
        "media_request" => Ok(inner(to_value(decode::<MediaRequestEvent>(
            aggregate_type,
            payload,
        )?))),
        // Every field of a download event is public.
        "download" => Ok(inner(to_value(decode::<DownloadEvent>(
            aggregate_type,
            payload,
        )?))),
        "user_account" => Ok(public_account(decode(aggregate_type, payload)?)),
        "user_session" => Ok(public_session(decode(aggregate_type, payload)?)),
        other => Err(PublicFormError::UnknownAggregate(other.to_string())),
    }
}

fn decode<E: DeserializeOwned>(
    aggregate_type: &str,
    payload: &Value,
) -> Result<E, PublicFormError> {
    E::deserialize(payload).map_err(|source| PublicFormError::Payload {
        aggregate_type: aggregate_type.to_string(),
        source,
    })
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The public form of an account event: no e-mail address, no password hash.
fn public_account(event: UserAccountEvent) -> Value {
    use UserAccountEvent as E;
    match event {
        E::Registered {
            user_id,
            plex_id,
            username,
            avatar,
            role,
            password_hash,
            email: _,
        } => json!({
            "user_id": user_id,
            "plex_id": plex_id,
            "username": username,
            "avatar": avatar,
            "role": role,
            "method": if password_hash.is_some() { SignInMethod::Local } else { SignInMethod::Plex },
        }),
        E::ProfileUpdated {
            username,
            avatar,
            email: _,
        } => {
            let mut data = serde_json::Map::new();
            if let Some(username) = username {
                data.insert("username".into(), Value::String(username));
            }
            if let Some(avatar) = avatar {
                data.insert("avatar".into(), Value::String(avatar));
            }
            Value::Object(data)
        }
        other @ (E::RoleChanged { .. }
        | E::QuotaChanged { .. }
        | E::Disabled { .. }
        | E::Enabled { .. }) => inner(to_value(other)),
    }
}

/// The public form of a session event: no token hash, no IP, no user agent, and of the
/// device only its product and platform.
fn public_session(event: UserSessionEvent) -> Value {
    use UserSessionEvent as E;
    match event {
        E::Started {
            user_id,
            method,
            device,
            expires_at,
            ip: _,
            user_agent: _,
            token_sha256: _,
        } => json!({
            "user_id": user_id,
            "method": method,
            "device": {"product": device.product, "platform": device.platform},
            "expires_at": expires_at,
        }),
        other @ (E::Refreshed { .. } | E::Revoked { .. } | E::Expired) => inner(to_value(other)),
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
    public_event(event_type, data)
}

/// Decodes a `download` event from its public form (`data` of a CloudEvent): every field
/// of a download event is public, so the public form is the whole event.
///
/// # Errors
/// The decoding error when `data` is not an event of type `event_type`.
pub fn download_event(event_type: &str, data: &Value) -> Result<DownloadEvent, serde_json::Error> {
    public_event(event_type, data)
}

/// Decodes an event whose public form is its whole stored form, from the CloudEvent's
/// `type` token (`available`) and `data`.
fn public_event<E: DeserializeOwned>(
    event_type: &str,
    data: &Value,
) -> Result<E, serde_json::Error> {
    // `{"<event_type>": data}` read in place, without building (and copying `data` into)
    // that object: this runs for every event a projection or a replay applies.
    let tagged = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(std::iter::once((
        event_type, data,
    )));
    E::deserialize(serde::de::value::MapAccessDeserializer::new(tagged)).or_else(|error| match data
    {
        // Unit variants (`processing`) are stored as a bare string.
        Value::Object(map) if map.is_empty() => {
            serde_json::from_value(Value::String(event_type.to_string()))
        }
        _ => Err(error),
    })
}

#[cfg(test)]
mod public_form_tests {
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Value};
    use uuid::Uuid;

    use super::{public_data, PublicFormError};
    use crate::user_account::SignInMethod;
    use crate::user_account::{Quota, UserAccountEvent};
    use crate::user_session::{Device, RevokeReason, UserSessionEvent};
    use crate::{ActorId, Role, UserId};

    const EMAIL: &str = "jane@example.com";
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
    const TOKEN_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const IP: &str = "203.0.113.7";
    const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";
    const DEVICE_NAME: &str = "Jane's laptop";
    const CLIENT_ID: &str = "b9c1e2d4-client";
    const AVATAR: &str = "https://plex.tv/users/0a1b2c/avatar?c=1700000000";

    /// Every value that must never leave the store.
    const SENSITIVE: [&str; 7] = [
        EMAIL,
        "$argon2id",
        TOKEN_SHA256,
        IP,
        USER_AGENT,
        DEVICE_NAME,
        CLIENT_ID,
    ];

    fn user_id() -> UserId {
        UserId::from(Uuid::from_u128(1))
    }

    fn admin() -> ActorId {
        ActorId::user(Uuid::from_u128(3))
    }

    /// The public data of `event` of `aggregate_type`, checked to hold nothing sensitive.
    fn public_form(aggregate_type: &str, event: impl serde::Serialize) -> Value {
        let payload = serde_json::to_value(event).unwrap();
        let data = public_data(aggregate_type, &payload).unwrap();
        let text = data.to_string();
        for secret in SENSITIVE {
            assert!(!text.contains(secret), "{secret:?} leaked in {text}");
        }
        data
    }

    fn account(event: UserAccountEvent) -> Value {
        public_form("user_account", event)
    }

    fn session(event: UserSessionEvent) -> Value {
        public_form("user_session", event)
    }

    // user_account.

    #[test]
    fn a_plex_registration_is_public_without_its_email() {
        let data = account(UserAccountEvent::Registered {
            user_id: user_id(),
            plex_id: Some(9_876_543),
            username: "jane".to_string(),
            email: Some(EMAIL.to_string()),
            avatar: Some(AVATAR.to_string()),
            role: Role::User,
            password_hash: None,
        });
        assert_eq!(
            data,
            json!({
                "user_id": user_id(),
                "plex_id": 9_876_543,
                "username": "jane",
                "avatar": AVATAR,
                "role": "user",
                "method": "plex",
            })
        );
    }

    #[test]
    fn a_local_registration_is_public_without_its_password_hash_or_email() {
        let data = account(UserAccountEvent::Registered {
            user_id: user_id(),
            plex_id: None,
            username: "jane.doe".to_string(),
            email: Some(EMAIL.to_string()),
            avatar: None,
            role: Role::Admin,
            password_hash: Some(HASH.to_string()),
        });
        assert_eq!(
            data,
            json!({
                "user_id": user_id(),
                "plex_id": null,
                "username": "jane.doe",
                "avatar": null,
                "role": "admin",
                "method": SignInMethod::Local.as_str(),
            })
        );
    }

    #[test]
    fn a_profile_update_is_public_without_its_email() {
        let data = account(UserAccountEvent::ProfileUpdated {
            username: Some("Jane Doe".to_string()),
            email: Some(EMAIL.to_string()),
            avatar: Some(AVATAR.to_string()),
        });
        assert_eq!(data, json!({"username": "Jane Doe", "avatar": AVATAR}));
    }

    #[test]
    fn a_profile_update_of_only_the_email_is_public_as_an_empty_object() {
        let data = account(UserAccountEvent::ProfileUpdated {
            username: None,
            email: Some(EMAIL.to_string()),
            avatar: None,
        });
        assert_eq!(data, json!({}));
    }

    #[test]
    fn a_role_change_is_public() {
        let data = account(UserAccountEvent::RoleChanged {
            role: Role::Admin,
            by: admin(),
        });
        assert_eq!(data, json!({"role": "admin", "by": admin().to_string()}));
    }

    #[test]
    fn a_quota_change_is_public() {
        let data = account(UserAccountEvent::QuotaChanged {
            movie: Some(Quota::new(5, 7).unwrap()),
            tv: None,
            by: admin(),
        });
        assert_eq!(
            data,
            json!({"movie": {"limit": 5, "days": 7}, "tv": null, "by": admin().to_string()})
        );
    }

    #[test]
    fn disabling_and_enabling_are_public() {
        assert_eq!(
            account(UserAccountEvent::Disabled { by: admin() }),
            json!({"by": admin().to_string()})
        );
        assert_eq!(
            account(UserAccountEvent::Enabled { by: admin() }),
            json!({"by": admin().to_string()})
        );
    }

    // user_session.

    #[test]
    fn a_start_is_public_without_token_hash_ip_user_agent_device_name_or_client_id() {
        let expires_at = Utc.with_ymd_and_hms(2025, 3, 31, 12, 0, 0).unwrap();
        let data = session(UserSessionEvent::Started {
            user_id: user_id(),
            method: SignInMethod::Plex,
            device: Device {
                client_id: Some(CLIENT_ID.to_string()),
                product: Some("Plex Web".to_string()),
                name: Some(DEVICE_NAME.to_string()),
                platform: Some("Firefox".to_string()),
            },
            ip: Some(IP.to_string()),
            user_agent: Some(USER_AGENT.to_string()),
            expires_at,
            token_sha256: TOKEN_SHA256.to_string(),
        });
        assert_eq!(
            data,
            json!({
                "user_id": user_id(),
                "method": "plex",
                "device": {"product": "Plex Web", "platform": "Firefox"},
                "expires_at": "2025-03-31T12:00:00Z",
            })
        );
    }

    #[test]
    fn a_start_from_an_unknown_device_is_public_with_null_product_and_platform() {
        let expires_at = Utc.with_ymd_and_hms(2025, 3, 31, 12, 0, 0).unwrap();
        let data = session(UserSessionEvent::Started {
            user_id: user_id(),
            method: SignInMethod::Local,
            device: Device::default(),
            ip: None,
            user_agent: None,
            expires_at,
            token_sha256: TOKEN_SHA256.to_string(),
        });
        assert_eq!(
            data,
            json!({
                "user_id": user_id(),
                "method": "local",
                "device": {"product": null, "platform": null},
                "expires_at": "2025-03-31T12:00:00Z",
            })
        );
    }

    #[test]
    fn a_refresh_is_public() {
        let expires_at = Utc.with_ymd_and_hms(2025, 3, 31, 13, 30, 0).unwrap();
        assert_eq!(
            session(UserSessionEvent::Refreshed { expires_at }),
            json!({"expires_at": "2025-03-31T13:30:00Z"})
        );
    }

    #[test]
    fn a_revocation_is_public() {
        assert_eq!(
            session(UserSessionEvent::Revoked {
                by: admin(),
                reason: RevokeReason::AccountDisabled,
            }),
            json!({"by": admin().to_string(), "reason": "account_disabled"})
        );
    }

    #[test]
    fn an_expiry_is_public_as_an_empty_object() {
        assert_eq!(session(UserSessionEvent::Expired), json!({}));
    }

    #[test]
    fn a_session_payload_is_not_an_account_event() {
        let payload = serde_json::to_value(UserSessionEvent::Revoked {
            by: admin(),
            reason: RevokeReason::Logout,
        })
        .unwrap();
        assert!(matches!(
            public_data("user_account", &payload),
            Err(PublicFormError::Payload { aggregate_type, .. }) if aggregate_type == "user_account"
        ));
    }

    #[test]
    fn an_undecodable_session_payload_is_an_error_that_does_not_echo_it() {
        let payload = json!({"started": {"token_sha256": TOKEN_SHA256, "ip": IP}});
        let error = public_data("user_session", &payload).expect_err("missing fields");
        assert!(matches!(error, PublicFormError::Payload { .. }));
        let message = error.to_string();
        assert!(!message.contains(TOKEN_SHA256), "{message}");
        assert!(!message.contains(IP), "{message}");
    }
}
