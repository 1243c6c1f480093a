//! The request-quota rule (docs/design.md §3, MediaRequest rules): a user may submit at most
//! `limit` requests of a media type in any rolling window of `days` days; admins are exempt.
//!
//! The rule spans aggregates (it counts a user's earlier requests), so the store's command
//! service gathers the submission times inside the window and asks [`check`] for the
//! decision; the decision itself, and the numbers the caller is told, live here.

use chrono::{DateTime, Duration, Utc};

use crate::user_account::Quota;

/// A refused submission: what the quota is, how much of it is used, and when the next slot
/// frees (the oldest counted submission leaving the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quota of {} requests per {} days reached ({used} used); next slot at {next_slot_at}", quota.limit, quota.days)]
pub struct QuotaExceeded {
    /// The quota applied.
    pub quota: Quota,
    /// Requests counted in the window.
    pub used: u32,
    /// When the oldest counted request leaves the window.
    pub next_slot_at: DateTime<Utc>,
}

/// The start of the window of `quota` that ends at `now`.
pub fn window_start(quota: Quota, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(i64::from(quota.days))
}

/// Decides whether one more submission fits: `counted` are the times of the user's counted
/// submissions of this media type (any order; those before the window are ignored).
///
/// # Errors
/// [`QuotaExceeded`] when `limit` submissions already fall inside the window.
pub fn check(
    quota: Quota,
    counted: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<u32, QuotaExceeded> {
    let start = window_start(quota, now);
    let mut inside: Vec<DateTime<Utc>> = counted.iter().copied().filter(|t| *t > start).collect();
    let used = u32::try_from(inside.len()).unwrap_or(u32::MAX);
    // `Quota::new` refuses a zero limit; one built by hand is read as a limit of one.
    let quota = Quota {
        limit: quota.limit.max(1),
        ..quota
    };
    if used < quota.limit {
        return Ok(used);
    }
    inside.sort_unstable();
    // With `used >= limit`, a slot frees when enough of the oldest leave the window that
    // fewer than `limit` remain: the (used - limit + 1)-th oldest's anniversary.
    let index = (used - quota.limit) as usize;
    let next_slot_at = inside[index] + Duration::days(i64::from(quota.days));
    Err(QuotaExceeded {
        quota,
        used,
        next_slot_at,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::{check, window_start, QuotaExceeded};
    use crate::user_account::Quota;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn days_ago(days: i64) -> DateTime<Utc> {
        now() - Duration::days(days)
    }

    fn hours_ago(hours: i64) -> DateTime<Utc> {
        now() - Duration::hours(hours)
    }

    /// Three requests a week.
    fn three_a_week() -> Quota {
        Quota::new(3, 7).expect("a valid quota")
    }

    #[test]
    fn the_window_ends_now_and_is_days_long() {
        assert_eq!(window_start(three_a_week(), now()), days_ago(7));
    }

    #[test]
    fn no_submissions_leave_the_whole_quota() {
        assert_eq!(check(three_a_week(), &[], now()), Ok(0));
    }

    #[test]
    fn under_the_limit_the_submission_fits_and_the_used_count_is_told() {
        assert_eq!(check(three_a_week(), &[days_ago(1)], now()), Ok(1));
        assert_eq!(
            check(three_a_week(), &[days_ago(6), hours_ago(1)], now()),
            Ok(2)
        );
    }

    #[test]
    fn at_the_limit_the_next_slot_is_the_oldest_submission_plus_the_window() {
        let counted = [days_ago(5), days_ago(2), hours_ago(3)];
        assert_eq!(
            check(three_a_week(), &counted, now()),
            Err(QuotaExceeded {
                quota: three_a_week(),
                used: 3,
                next_slot_at: days_ago(5) + Duration::days(7),
            })
        );
    }

    #[test]
    fn submissions_older_than_the_window_are_not_counted() {
        let counted = [
            days_ago(30),
            days_ago(8),
            days_ago(7),
            days_ago(2),
            hours_ago(1),
        ];
        assert_eq!(check(three_a_week(), &counted, now()), Ok(2));
    }

    #[test]
    fn a_submission_just_inside_the_window_is_counted() {
        let just_inside = days_ago(7) + Duration::seconds(1);
        let counted = [just_inside, days_ago(2), hours_ago(1)];
        assert_eq!(
            check(three_a_week(), &counted, now()),
            Err(QuotaExceeded {
                quota: three_a_week(),
                used: 3,
                next_slot_at: now() + Duration::seconds(1),
            })
        );
    }

    #[test]
    fn the_order_of_the_submissions_does_not_matter() {
        let counted = [hours_ago(3), days_ago(20), days_ago(5), days_ago(2)];
        assert_eq!(
            check(three_a_week(), &counted, now()),
            Err(QuotaExceeded {
                quota: three_a_week(),
                used: 3,
                next_slot_at: days_ago(5) + Duration::days(7),
            })
        );
    }

    /// With more inside the window than the limit (the limit was lowered), a slot frees only
    /// when enough have left that fewer than `limit` remain.
    #[test]
    fn over_the_limit_the_next_slot_waits_for_enough_submissions_to_leave() {
        let two_a_week = Quota::new(2, 7).expect("a valid quota");
        let counted = [days_ago(1), days_ago(6), days_ago(3), days_ago(5)];
        assert_eq!(
            check(two_a_week, &counted, now()),
            Err(QuotaExceeded {
                quota: two_a_week,
                used: 4,
                // 6 and 5 days ago leave first, leaving two; the third oldest frees the slot.
                next_slot_at: days_ago(3) + Duration::days(7),
            })
        );
    }

    #[test]
    fn a_limit_of_one_is_exceeded_by_one_submission() {
        let one_a_day = Quota::new(1, 1).expect("a valid quota");
        assert_eq!(
            check(one_a_day, &[hours_ago(20)], now()),
            Err(QuotaExceeded {
                quota: one_a_day,
                used: 1,
                next_slot_at: now() + Duration::hours(4),
            })
        );
        assert_eq!(check(one_a_day, &[hours_ago(24)], now()), Ok(0));
    }

    #[test]
    fn the_refusal_tells_quota_usage_and_next_slot() {
        let refusal = check(
            three_a_week(),
            &[days_ago(5), days_ago(2), hours_ago(3)],
            now(),
        )
        .expect_err("the quota is used up");
        assert_eq!(
            refusal.to_string(),
            "quota of 3 requests per 7 days reached (3 used); next slot at 2025-03-03 12:00:00 UTC"
        );
    }
}
