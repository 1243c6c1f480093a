//! What each session command decides: one function per command, and the dispatch.
//!
//! `start` is the only function that sees a session that may not exist yet; every other
//! command takes the session as [`Existing`], which the dispatch makes (or refuses with
//! `NotFound`) before calling it.

use crate::UserId;
use chrono::{DateTime, Utc};

use super::state::Started;
use super::{
    Device, RevokeReason, SessionStatus, UserSession, UserSessionCommand, UserSessionError,
    UserSessionEvent, UserSessionServices, REFRESH_INTERVAL,
};
use crate::decision::{Decide, Existing};
use crate::user_account::SignInMethod;
use crate::{Actor, ActorId};

use UserSessionEvent as E;

/// The decision on a session.
type Decision = Result<Vec<UserSessionEvent>, UserSessionError>;

/// The session a command acts on.
type Session<'a> = Existing<'a, Started>;

impl Decide for UserSession {
    fn decide(&self, command: UserSessionCommand, _services: &UserSessionServices) -> Decision {
        use UserSessionCommand as C;

        let name = command.name();
        let existing = || Existing::of(self.started.as_ref(), name, UserSessionError::NotFound);
        match command {
            C::Start {
                user_id,
                method,
                device,
                ip,
                user_agent,
                now,
                expires_at,
                token_sha256,
            } => start(
                self,
                user_id,
                method,
                device,
                ip,
                user_agent,
                now,
                expires_at,
                token_sha256,
            ),
            C::Refresh { now, expires_at } => refresh(existing()?, now, expires_at),
            C::Revoke { by, reason } => revoke(existing()?, by, reason),
            C::Expire { now } => expire(existing()?, now),
        }
    }
}

/// `Start`: a session with a future expiry and a well-formed token hash, on a new id.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field of `Start`, as the dispatch destructures it"
)]
fn start(
    session: &UserSession,
    user_id: UserId,
    method: SignInMethod,
    device: Device,
    ip: Option<String>,
    user_agent: Option<String>,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    token_sha256: String,
) -> Decision {
    if session.started.is_some() {
        return Err(UserSessionError::AlreadyStarted);
    }
    if expires_at <= now {
        return Err(UserSessionError::invalid(
            "expires_at",
            "must be in the future",
        ));
    }
    let is_hex = token_sha256.len() == 64
        && token_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex {
        return Err(UserSessionError::invalid(
            "token_sha256",
            "must be 64 lower-case hex characters",
        ));
    }
    Ok(vec![E::Started {
        user_id,
        method,
        device: clean_device(device),
        ip: clip(ip, 64),
        user_agent: clip(user_agent, 512),
        expires_at,
        token_sha256,
    }])
}

/// `Refresh`: an active session moves its expiry, written when it moves by at least
/// [`REFRESH_INTERVAL`].
fn refresh(session: Session<'_>, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Decision {
    if session.status != SessionStatus::Active {
        return Err(UserSessionError::Ended(session.status.as_str()));
    }
    if session.expires_at <= now {
        // Expired by time, though the expirer has not recorded it yet.
        return Err(UserSessionError::Ended(SessionStatus::Expired.as_str()));
    }
    if expires_at - session.expires_at >= REFRESH_INTERVAL {
        Ok(vec![E::Refreshed { expires_at }])
    } else {
        Ok(vec![])
    }
}

/// `Revoke`: the session's user or an admin ends it.
fn revoke(session: Session<'_>, by: Actor, reason: RevokeReason) -> Decision {
    by.require_admin_or(
        &ActorId::user(session.user_id),
        "only the session's user or an admin may end it",
    )?;
    match session.status {
        SessionStatus::Active => Ok(vec![E::Revoked { by: by.id, reason }]),
        // Ending an ended session is already reflected.
        SessionStatus::Revoked | SessionStatus::Expired => Ok(vec![]),
    }
}

/// `Expire`: the session expirer ends an active session whose expiry has passed.
fn expire(session: Session<'_>, now: DateTime<Utc>) -> Decision {
    match session.status {
        SessionStatus::Active if session.expires_at <= now => Ok(vec![E::Expired]),
        SessionStatus::Active => Err(UserSessionError::NotExpired(session.expires_at)),
        SessionStatus::Revoked | SessionStatus::Expired => Ok(vec![]),
    }
}

/// Trims `text`, drops it when empty, and keeps at most `max` characters.
fn clip(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| t.trim().chars().take(max).collect::<String>())
        .filter(|t| !t.is_empty())
}

/// The device with each field clipped to 200 characters.
fn clean_device(device: Device) -> Device {
    Device {
        client_id: clip(device.client_id, 200),
        product: clip(device.product, 200),
        name: clip(device.name, 200),
        platform: clip(device.platform, 200),
    }
}
