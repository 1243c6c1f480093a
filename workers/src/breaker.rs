//! Circuit breakers, one per external service (docs/design.md §6): Overseerr, Plex, yt-dlp.
//!
//! A breaker starts **closed**: calls go through, and transient failures (5xx, timeouts,
//! connection errors; what each client's `is_retryable` says) are counted. After
//! [`BreakerConfig::failure_threshold`] transient failures in a row it **opens**: no call is
//! made for [`BreakerConfig::cool_down`]. Then it is **half-open**: one trial call goes
//! through (others wait for its outcome); a success closes the breaker, a transient failure
//! opens it again for another cool-down.
//!
//! Permanent failures (4xx answers, bad configuration, undecodable answers) are not outages:
//! they show the service answered, so they reset the count like a success (and close a
//! half-open breaker), without being recorded as one.
//!
//! Sagas do not fail a request because a breaker is open: [`CircuitBreaker::call`] waits
//! until the trial time instead of calling, and a transient failure that leaves the breaker
//! open is not an attempt of the saga's retry policy but a wait — the call is made again once
//! half-open. Waiting ends early only on shutdown ([`Guarded::Stopped`]).
//!
//! Every transition, and (at most once per [`HEALTH_WRITE_INTERVAL`]) the failure count and
//! last error, are written to the `service_health` table in the background when the breaker
//! has one ([`CircuitBreaker::with_health_table`]); the dashboard shows it. A database
//! failure there is logged, never passed on to the saga.
//!
//! Why not the `failsafe` crate: its `Instrument` hooks carry no context (no error, no
//! failure count, no time the breaker reopens), its state is private (no "open until" to
//! wait for), and its half-open state lets every call through rather than one trial. The
//! state machine here is small and unit-tested.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The least time between two writes of the same state to `service_health` (transitions are
/// written at once).
pub const HEALTH_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// An external service with a breaker of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Overseerr (the forwarder and the reconciler).
    Overseerr,
    /// The Plex Media Server (the scanner).
    Plex,
    /// yt-dlp and the sites it downloads from (the downloader).
    YtDlp,
}

impl Service {
    /// The name in `service_health` and on the dashboard: `overseerr`, `plex`, `ytdlp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overseerr => "overseerr",
            Self::Plex => "plex",
            Self::YtDlp => "ytdlp",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Transient failures in a row that open the breaker (at least 1; default 5).
    pub failure_threshold: u32,
    /// How long an open breaker holds calls back before a trial call (default 30 s).
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are held back until the cool-down ends.
    Open,
    /// One trial call decides.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a breaker reports: a row of `service_health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The service.
    pub service: Service,
    /// The state.
    pub state: BreakerState,
    /// Transient failures in a row.
    pub consecutive_failures: u32,
    /// The last transient failure.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When a call last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the breaker last opened.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the breaker entered its state (or was created).
    pub since: DateTime<Utc>,
}

/// Why a call may not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When a trial call may be made; `None` while another call's trial is in flight (its
    /// outcome decides).
    pub retry_at: Option<Instant>,
}

/// The outcome of a call made through [`CircuitBreaker::call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded<E> {
    /// The call failed (permanently, or transiently with the breaker still closed).
    Failed(E),
    /// Shutdown came while the breaker held the call back; nothing was called.
    Stopped,
}

impl<E> Guarded<E> {
    /// Whether the saga's retry policy should try again: a failure `transient` says is
    /// transient (never [`Guarded::Stopped`]).
    pub fn is_transient(&self, transient: impl Fn(&E) -> bool) -> bool {
        match self {
            Self::Failed(error) => transient(error),
            Self::Stopped => false,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Guarded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(error) => error.fmt(f),
            Self::Stopped => f.write_str("stopped while the circuit breaker was open"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Self::Closed => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// The state machine, with time passed in (so it is tested without waiting).
#[derive(Debug, Clone)]
struct Machine {
    config: BreakerConfig,
    phase: Phase,
    failures: u32,
}

/// How a call ended, for the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It succeeded.
    Success,
    /// The service answered with a permanent error: not an outage.
    Answered,
    /// A transient failure: counts towards opening.
    Failure,
}

impl Machine {
    fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            phase: Phase::Closed,
            failures: 0,
        }
    }

    /// May a call be made at `now`? `Ok(true)` for a half-open trial.
    fn try_acquire(&mut self, now: Instant) -> Result<bool, Rejected> {
        match self.phase {
            Phase::Closed => Ok(false),
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen {
                    trial_in_flight: true,
                };
                Ok(true)
            }
            Phase::Open { until } => Err(Rejected {
                retry_at: Some(until),
            }),
            Phase::HalfOpen {
                trial_in_flight: false,
            } => {
                self.phase = Phase::HalfOpen {
                    trial_in_flight: true,
                };
                Ok(true)
            }
            Phase::HalfOpen {
                trial_in_flight: true,
            } => Err(Rejected { retry_at: None }),
        }
    }

    /// Records a call's outcome (`trial`: it was the half-open trial).
    fn record(&mut self, verdict: Verdict, trial: bool, now: Instant) {
        match verdict {
            Verdict::Success | Verdict::Answered => {
                self.failures = 0;
                // Also a call let through before the breaker opened: the service answers.
                self.phase = Phase::Closed;
            }
            Verdict::Failure => {
                self.failures = self.failures.saturating_add(1);
                let open = match self.phase {
                    Phase::Closed => self.failures >= self.config.failure_threshold,
                    Phase::HalfOpen { .. } => trial,
                    // A call let through before the breaker opened: already open.
                    Phase::Open { .. } => false,
                };
                if open {
                    self.phase = Phase::Open {
                        until: now + self.config.cool_down,
                    };
                }
            }
        }
    }

    /// A trial call ended without an outcome (cancelled): another may be made.
    fn release_trial(&mut self) {
        if self.phase
            == (Phase::HalfOpen {
                trial_in_flight: true,
            })
        {
            self.phase = Phase::HalfOpen {
                trial_in_flight: false,
            };
        }
    }
}

/// The breaker of one service, shared by the sagas that call it.
#[derive(Debug)]
pub struct CircuitBreaker {
    service: Service,
    inner: Mutex<Inner>,
    changed: Notify,
    health: watch::Sender<Health>,
}

#[derive(Debug)]
struct Inner {
    machine: Machine,
    health: Health,
}

impl CircuitBreaker {
    /// A closed breaker for `service`.
    pub fn new(service: Service, config: BreakerConfig) -> Self {
        let health = Health {
            service,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            last_error: None,
            last_failure_at: None,
            last_success_at: None,
            opened_at: None,
            since: Utc::now(),
        };
        metrics::gauge!("medianest_circuit_breaker_state", "service" => service.as_str())
            .set(BreakerState::Closed.gauge());
        Self {
            service,
            inner: Mutex::new(Inner {
                machine: Machine::new(config),
                health: health.clone(),
            }),
            changed: Notify::new(),
            health: watch::Sender::new(health),
        }
    }

    /// Also writes the breaker's health to `service_health` (see the module docs), from a
    /// background task that ends with the breaker. The first write says the breaker is
    /// closed as of now (keeping the last error and times a previous process recorded).
    ///
    /// Must be called within a Tokio runtime.
    pub fn with_health_table(self, pool: PgPool) -> Self {
        tokio::spawn(record_health(
            pool,
            self.health.subscribe(),
            HEALTH_WRITE_INTERVAL,
        ));
        self
    }

    /// The service.
    pub fn service(&self) -> Service {
        self.service
    }

    /// What the breaker reports now.
    pub fn health(&self) -> Health {
        self.lock().health.clone()
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.lock().machine.phase.state()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to make one call now. The permit must be told the outcome
    /// ([`Permit::succeeded`], [`Permit::answered`], [`Permit::failed`] or
    /// [`Permit::record`]); dropping it says nothing (the call was abandoned).
    ///
    /// # Errors
    /// [`Rejected`] while open, or half-open with a trial in flight.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let mut inner = self.lock();
        let before = inner.machine.phase.state();
        let trial = inner.machine.try_acquire(Instant::now())?;
        self.after_change(&mut inner, before, None);
        Ok(Permit {
            breaker: self,
            trial,
            done: false,
        })
    }

    /// Waits until a call may be made (the cool-down's end, or a trial's outcome). `None`
    /// when `shutdown` comes first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Permit<'_>> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let retry_at = match self.try_acquire() {
                Ok(permit) => return Some(permit),
                Err(Rejected { retry_at }) => retry_at,
            };
            let until_retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = until_retry => {}
                () = &mut notified => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Makes `call` through the breaker: waits while it is open; records the outcome
    /// (`transient` tells transient failures from permanent ones); and when a transient
    /// failure leaves the breaker open, waits for the trial time and calls again rather than
    /// answering the failure — a service that is down makes the saga wait, not fail.
    ///
    /// # Errors
    /// [`Guarded::Failed`] with a permanent failure, or a transient one while the breaker
    /// is still closed (for the caller's retry policy); [`Guarded::Stopped`] on shutdown.
    pub async fn call<T, E, F, Fut>(
        &self,
        shutdown: &CancellationToken,
        mut call: F,
        transient: impl Fn(&E) -> bool,
    ) -> Result<T, Guarded<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        loop {
            let Some(permit) = self.acquire(shutdown).await else {
                return Err(Guarded::Stopped);
            };
            let result = call().await;
            let state = permit.record(&result, &transient);
            match result {
                Err(error) if transient(&error) && state == BreakerState::Open => {
                    debug!(service = %self.service, %error, "the breaker is open: waiting to call again");
                }
                other => return other.map_err(Guarded::Failed),
            }
        }
    }

    fn finish(&self, verdict: Verdict, trial: bool, error: Option<String>) -> BreakerState {
        let mut inner = self.lock();
        let before = inner.machine.phase.state();
        inner.machine.record(verdict, trial, Instant::now());
        let now = Utc::now();
        match verdict {
            Verdict::Success => inner.health.last_success_at = Some(now),
            Verdict::Answered => {}
            Verdict::Failure => {
                inner.health.last_failure_at = Some(now);
                inner.health.last_error = error;
            }
        }
        self.after_change(&mut inner, before, Some(verdict));
        inner.machine.phase.state()
    }

    fn release(&self) {
        let mut inner = self.lock();
        let before = inner.machine.phase.state();
        inner.machine.release_trial();
        self.after_change(&mut inner, before, None);
    }

    /// Updates the health, logs and counts a transition, publishes, wakes waiters.
    fn after_change(&self, inner: &mut Inner, before: BreakerState, verdict: Option<Verdict>) {
        let state = inner.machine.phase.state();
        let now = Utc::now();
        let failures = inner.machine.failures;
        let health = &mut inner.health;
        let changed = health.state != state || health.consecutive_failures != failures;
        health.consecutive_failures = failures;
        if state != before {
            health.state = state;
            health.since = now;
            let service = self.service.as_str();
            match state {
                BreakerState::Open => {
                    health.opened_at = Some(now);
                    warn!(
                        service,
                        failures,
                        last_error = health.last_error.as_deref().unwrap_or_default(),
                        cool_down = ?inner.machine.config.cool_down,
                        "circuit breaker opened: calls are held back"
                    );
                }
                BreakerState::HalfOpen => info!(service, "circuit breaker half-open: a trial call"),
                BreakerState::Closed => info!(service, "circuit breaker closed"),
            }
            metrics::gauge!("medianest_circuit_breaker_state", "service" => service)
                .set(state.gauge());
            metrics::counter!(
                "medianest_circuit_breaker_transitions_total",
                "service" => service,
                "state" => state.as_str()
            )
            .increment(1);
        }
        if changed || verdict.is_some() {
            self.health.send_replace(health.clone());
        }
        self.changed.notify_waiters();
    }
}

/// Leave to make one call; tell it how the call ended.
#[must_use = "a permit must be told how the call ended"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    done: bool,
}

impl Permit<'_> {
    /// Whether this is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The call succeeded. Answers the breaker's state after it.
    pub fn succeeded(mut self) -> BreakerState {
        self.done = true;
        self.breaker.finish(Verdict::Success, self.trial, None)
    }

    /// The service answered with a permanent error (a 4xx, say): not an outage.
    pub fn answered(mut self) -> BreakerState {
        self.done = true;
        self.breaker.finish(Verdict::Answered, self.trial, None)
    }

    /// The call failed transiently with `error`.
    pub fn failed(mut self, error: &dyn fmt::Display) -> BreakerState {
        self.done = true;
        self.breaker
            .finish(Verdict::Failure, self.trial, Some(error.to_string()))
    }

    /// Records `result`: success, a transient failure (`transient`), or a permanent one.
    pub fn record<T, E: fmt::Display>(
        self,
        result: &Result<T, E>,
        transient: impl Fn(&E) -> bool,
    ) -> BreakerState {
        match result {
            Ok(_) => self.succeeded(),
            Err(error) if transient(error) => self.failed(error),
            Err(_) => self.answered(),
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.trial {
            self.breaker.release();
        }
    }
}

/// Writes the breaker's health to `service_health`: at once for a transition, otherwise at
/// most once per `interval` (the latest value). Ends when the breaker is dropped.
async fn record_health(pool: PgPool, mut health: watch::Receiver<Health>, interval: Duration) {
    let mut written: Option<Health> = None;
    let mut written_at: Option<Instant> = None;
    loop {
        let mut latest = health.borrow_and_update().clone();
        if written.as_ref() == Some(&latest) {
            if health.changed().await.is_err() {
                return;
            }
            continue;
        }
        let transition = written
            .as_ref()
            .is_none_or(|w| w.state != latest.state || w.since != latest.since);
        if !transition {
            let deadline = written_at.map_or_else(Instant::now, |at| at + interval);
            let since = written.as_ref().map(|w| w.since);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    changed = health.changed() => {
                        if changed.is_err() || Some(health.borrow().since) != since {
                            break;
                        }
                    }
                }
            }
            latest = health.borrow_and_update().clone();
        }
        match write_health(&pool, &latest).await {
            Ok(()) => {
                written = Some(latest);
                written_at = Some(Instant::now());
            }
            Err(error) => {
                warn!(%error, service = %latest.service, "cannot record the service's health");
                if health.has_changed().is_err() {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// Upserts one `service_health` row; the last error and times of earlier rows are kept
/// where the new one has none (a new process starts without them).
///
/// # Errors
/// The database error.
pub async fn write_health(pool: &PgPool, health: &Health) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO service_health (service, state, consecutive_failures, last_error,
            last_failure_at, last_success_at, opened_at, state_since, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
         ON CONFLICT (service) DO UPDATE SET
            state = EXCLUDED.state,
            consecutive_failures = EXCLUDED.consecutive_failures,
            last_error = COALESCE(EXCLUDED.last_error, service_health.last_error),
            last_failure_at = COALESCE(EXCLUDED.last_failure_at, service_health.last_failure_at),
            last_success_at = COALESCE(EXCLUDED.last_success_at, service_health.last_success_at),
            opened_at = COALESCE(EXCLUDED.opened_at, service_health.opened_at),
            state_since = EXCLUDED.state_since,
            updated_at = now()",
    )
    .bind(health.service.as_str())
    .bind(health.state.as_str())
    .bind(i32::try_from(health.consecutive_failures).unwrap_or(i32::MAX))
    .bind(&health.last_error)
    .bind(health.last_failure_at)
    .bind(health.last_success_at)
    .bind(health.opened_at)
    .bind(health.since)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    fn config(failure_threshold: u32, cool_down: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            cool_down,
        }
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_transient_failures() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(3, Duration::from_secs(30)));
        for _ in 0..2 {
            assert_eq!(m.try_acquire(t0), Ok(false));
            m.record(Verdict::Failure, false, t0);
            assert_eq!(m.phase, Phase::Closed);
        }
        m.record(Verdict::Failure, false, t0);
        assert_eq!(
            m.phase,
            Phase::Open {
                until: t0 + Duration::from_secs(30)
            }
        );
        assert_eq!(
            m.try_acquire(t0 + Duration::from_secs(29)),
            Err(Rejected {
                retry_at: Some(t0 + Duration::from_secs(30))
            })
        );
    }

    #[test]
    fn a_success_or_a_permanent_error_resets_the_count() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(3, Duration::from_secs(30)));
        m.record(Verdict::Failure, false, t0);
        m.record(Verdict::Failure, false, t0);
        m.record(Verdict::Success, false, t0);
        assert_eq!(m.failures, 0);
        m.record(Verdict::Failure, false, t0);
        m.record(Verdict::Failure, false, t0);
        // A 4xx: the service answered, so it is not an outage.
        m.record(Verdict::Answered, false, t0);
        m.record(Verdict::Failure, false, t0);
        assert_eq!(m.phase, Phase::Closed);
        assert_eq!(m.failures, 1);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_outcome_decides() {
        let t0 = Instant::now();
        let cool_down = Duration::from_secs(10);
        let mut m = Machine::new(config(1, cool_down));
        m.record(Verdict::Failure, false, t0);
        let t1 = t0 + cool_down;
        assert_eq!(m.try_acquire(t1), Ok(true), "the trial");
        assert_eq!(m.try_acquire(t1), Err(Rejected { retry_at: None }));
        // The trial fails: open for another cool-down.
        m.record(Verdict::Failure, true, t1);
        assert_eq!(
            m.phase,
            Phase::Open {
                until: t1 + cool_down
            }
        );
        let t2 = t1 + cool_down;
        assert_eq!(m.try_acquire(t2), Ok(true));
        m.record(Verdict::Success, true, t2);
        assert_eq!(m.phase, Phase::Closed);
        assert_eq!(m.failures, 0);
        assert_eq!(m.try_acquire(t2), Ok(false));
    }

    #[test]
    fn an_abandoned_trial_lets_another_through() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(1, Duration::ZERO));
        m.record(Verdict::Failure, false, t0);
        assert_eq!(m.try_acquire(t0), Ok(true));
        m.release_trial();
        assert_eq!(m.try_acquire(t0), Ok(true));
    }

    #[test]
    fn a_permanent_error_of_the_trial_closes_the_breaker() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(1, Duration::ZERO));
        m.record(Verdict::Failure, false, t0);
        assert_eq!(m.try_acquire(t0), Ok(true));
        m.record(Verdict::Answered, true, t0);
        assert_eq!(m.phase, Phase::Closed);
    }

    #[test]
    fn a_late_failure_of_a_call_from_before_the_opening_does_not_extend_it() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(1, Duration::from_secs(10)));
        m.record(Verdict::Failure, false, t0);
        m.record(Verdict::Failure, false, t0 + Duration::from_secs(5));
        assert_eq!(
            m.phase,
            Phase::Open {
                until: t0 + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_zero_threshold_is_one() {
        let t0 = Instant::now();
        let mut m = Machine::new(config(0, Duration::from_secs(1)));
        assert_eq!(m.phase, Phase::Closed);
        m.record(Verdict::Failure, false, t0);
        assert_eq!(m.phase.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn permits_report_health_and_transitions() {
        let breaker = CircuitBreaker::new(Service::Overseerr, config(2, Duration::from_secs(60)));
        let mut health = breaker.health.subscribe();
        breaker
            .try_acquire()
            .expect("closed")
            .failed(&"connection refused");
        let seen = health.borrow_and_update().clone();
        assert_eq!(seen.state, BreakerState::Closed);
        assert_eq!(seen.consecutive_failures, 1);
        assert_eq!(seen.last_error.as_deref(), Some("connection refused"));
        let state = breaker.try_acquire().expect("closed").failed(&"HTTP 503");
        assert_eq!(state, BreakerState::Open);
        let seen = breaker.health();
        assert_eq!(seen.state, BreakerState::Open);
        assert_eq!(seen.consecutive_failures, 2);
        assert_eq!(seen.last_error.as_deref(), Some("HTTP 503"));
        assert!(seen.opened_at.is_some());
        assert_eq!(Some(seen.since), seen.opened_at);
        assert!(breaker.try_acquire().is_err(), "open: no call");
        assert_eq!(breaker.service().as_str(), "overseerr");
    }

    #[tokio::test]
    async fn call_waits_out_an_outage_instead_of_failing() {
        let breaker = CircuitBreaker::new(Service::Overseerr, config(2, Duration::from_millis(50)));
        let calls = AtomicU32::new(0);
        let shutdown = CancellationToken::new();
        // Four transient failures, then the service is back.
        let result: Result<&str, Guarded<String>> = breaker
            .call(
                &shutdown,
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 4 {
                            Err(format!("503 #{n}"))
                        } else {
                            Ok("created")
                        }
                    }
                },
                |_| true,
            )
            .await
            // The first failure leaves the breaker closed: the caller's retry policy decides.
            .or_else(|error| {
                assert_eq!(error, Guarded::Failed("503 #0".to_string()));
                Ok::<_, Guarded<String>>("retry")
            });
        assert_eq!(result, Ok("retry"));
        let started = Instant::now();
        let result = breaker
            .call(
                &shutdown,
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 4 {
                            Err(format!("503 #{n}"))
                        } else {
                            Ok("created")
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Ok("created"));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // Opened by the second failure; three trials (two failed), each after a cool-down.
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.health().consecutive_failures, 0);
        assert!(breaker.health().last_success_at.is_some());
    }

    #[tokio::test]
    async fn a_permanent_failure_is_answered_at_once_and_opens_nothing() {
        let breaker = CircuitBreaker::new(Service::Plex, config(1, Duration::from_secs(60)));
        let shutdown = CancellationToken::new();
        let result: Result<(), _> = breaker
            .call(&shutdown, || async { Err("400 bad request") }, |_| false)
            .await;
        assert_eq!(result, Err(Guarded::Failed("400 bad request")));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.health().last_error, None);
        assert!(!Guarded::Failed("400").is_transient(|_: &&str| false));
        assert!(Guarded::Failed("503").is_transient(|_: &&str| true));
        assert!(!Guarded::<&str>::Stopped.is_transient(|_| true));
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_without_calling() {
        let breaker = CircuitBreaker::new(Service::YtDlp, config(1, Duration::from_secs(3600)));
        breaker.try_acquire().expect("closed").failed(&"timeout");
        let shutdown = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        let result: Result<(), Guarded<&str>> = breaker
            .call(
                &shutdown,
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Err(Guarded::Stopped));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn waiters_follow_the_trial_and_a_dropped_trial_frees_the_way() {
        let breaker = Arc::new(CircuitBreaker::new(
            Service::Overseerr,
            config(1, Duration::from_millis(10)),
        ));
        breaker.try_acquire().expect("closed").failed(&"refused");
        tokio::time::sleep(Duration::from_millis(15)).await;
        let trial = breaker.try_acquire().expect("the trial");
        assert!(trial.is_trial());
        let waiter = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                let shutdown = CancellationToken::new();
                let permit = breaker.acquire(&shutdown).await.expect("a permit");
                permit.is_trial()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits for the trial's outcome");
        drop(trial);
        let was_trial = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert!(was_trial, "the abandoned trial's place");
    }

    #[tokio::test]
    async fn a_successful_trial_lets_waiters_through_as_closed() {
        let breaker = Arc::new(CircuitBreaker::new(
            Service::Overseerr,
            config(1, Duration::from_millis(10)),
        ));
        breaker.try_acquire().expect("closed").failed(&"refused");
        tokio::time::sleep(Duration::from_millis(15)).await;
        let trial = breaker.try_acquire().expect("the trial");
        let waiter = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                let shutdown = CancellationToken::new();
                let permit = breaker.acquire(&shutdown).await.expect("a permit");
                permit.succeeded()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(trial.succeeded(), BreakerState::Closed);
        let state = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(state, BreakerState::Closed);
    }
}
