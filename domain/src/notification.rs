//! What MediaNest tells people about (issue 14): the notification types, which events raise
//! them, and who they are for. Pure vocabulary and rules; the notifier saga
//! (`medianest_workers::notifier`) applies them, the channels live in
//! `medianest_integrations::notify`.

use serde::{Deserialize, Serialize};

/// A kind of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    /// A member's request waits for an admin (not raised for auto-approved requests).
    RequestPending,
    /// A request was approved, by an admin or automatically.
    RequestApproved,
    /// A request was declined (with the admin's reason).
    RequestDeclined,
    /// Everything requested is in Plex.
    RequestAvailable,
    /// Some of the requested seasons are in Plex.
    RequestPartiallyAvailable,
    /// Fulfilment failed (Overseerr, Sonarr/Radarr), or forwarding failed for good.
    RequestFailed,
    /// A YouTube download is in the library.
    DownloadCompleted,
    /// A YouTube download failed.
    DownloadFailed,
    /// A service MediaNest depends on stopped answering (its circuit breaker opened).
    ServiceDown,
    /// It answers again (its circuit breaker closed).
    ServiceUp,
}

/// Who a notification type is for by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    /// The member whose request or download it is.
    pub requester: bool,
    /// Every enabled admin.
    pub admins: bool,
}

impl NotificationType {
    /// Every type, in the order the API lists them.
    pub const ALL: [NotificationType; 10] = [
        NotificationType::RequestPending,
        NotificationType::RequestApproved,
        NotificationType::RequestDeclined,
        NotificationType::RequestAvailable,
        NotificationType::RequestPartiallyAvailable,
        NotificationType::RequestFailed,
        NotificationType::DownloadCompleted,
        NotificationType::DownloadFailed,
        NotificationType::ServiceDown,
        NotificationType::ServiceUp,
    ];

    /// The wire name (`request_pending`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::RequestPending => "request_pending",
            NotificationType::RequestApproved => "request_approved",
            NotificationType::RequestDeclined => "request_declined",
            NotificationType::RequestAvailable => "request_available",
            NotificationType::RequestPartiallyAvailable => "request_partially_available",
            NotificationType::RequestFailed => "request_failed",
            NotificationType::DownloadCompleted => "download_completed",
            NotificationType::DownloadFailed => "download_failed",
            NotificationType::ServiceDown => "service_down",
            NotificationType::ServiceUp => "service_up",
        }
    }

    /// The type named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The type an event raises: `(aggregate type, event type)` as on the wire, e.g.
    /// `("media_request", "available")`. `submitted` raises `request_pending` (the notifier
    /// drops it when the request is no longer pending: auto-approved, or decided already);
    /// `forward_failed` raises `request_failed` only when retrying cannot help.
    pub fn for_event(aggregate_type: &str, event_type: &str) -> Option<Self> {
        Some(match (aggregate_type, event_type) {
            ("media_request", "submitted") => NotificationType::RequestPending,
            ("media_request", "approved") => NotificationType::RequestApproved,
            ("media_request", "declined") => NotificationType::RequestDeclined,
            ("media_request", "available") => NotificationType::RequestAvailable,
            ("media_request", "partially_available") => NotificationType::RequestPartiallyAvailable,
            ("media_request", "failed" | "forward_failed") => NotificationType::RequestFailed,
            ("download", "completed") => NotificationType::DownloadCompleted,
            ("download", "failed") => NotificationType::DownloadFailed,
            _ => return None,
        })
    }

    /// Who it is for by default: pending requests and service health go to admins;
    /// everything about a request or download to its requester; failed requests to both.
    pub fn audience(self) -> Audience {
        use NotificationType as T;
        match self {
            T::RequestPending | T::ServiceDown | T::ServiceUp => Audience {
                requester: false,
                admins: true,
            },
            T::RequestFailed => Audience {
                requester: true,
                admins: true,
            },
            T::RequestApproved
            | T::RequestDeclined
            | T::RequestAvailable
            | T::RequestPartiallyAvailable
            | T::DownloadCompleted
            | T::DownloadFailed => Audience {
                requester: true,
                admins: false,
            },
        }
    }

    /// Whether a member gets it by e-mail when they have chosen nothing (and an e-mail
    /// address is known): their own requests' approved, declined, available and failed;
    /// for admins also pending requests, failed requests and service health.
    pub fn emailed_by_default(self, admin: bool) -> bool {
        use NotificationType as T;
        match self {
            T::RequestApproved | T::RequestDeclined | T::RequestAvailable | T::RequestFailed => {
                true
            }
            T::RequestPending | T::ServiceDown | T::ServiceUp => admin,
            T::RequestPartiallyAvailable | T::DownloadCompleted | T::DownloadFailed => false,
        }
    }
}

impl std::fmt::Display for NotificationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_events_map_to_types() {
        for t in NotificationType::ALL {
            assert_eq!(NotificationType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        assert_eq!(
            NotificationType::for_event("media_request", "available"),
            Some(NotificationType::RequestAvailable)
        );
        assert_eq!(
            NotificationType::for_event("media_request", "retried"),
            None
        );
        assert!(NotificationType::RequestFailed.audience().admins);
        assert!(!NotificationType::RequestPending.emailed_by_default(false));
    }
}
