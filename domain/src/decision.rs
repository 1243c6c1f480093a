//! The one body of every aggregate's `handle`: decide, then write what was decided.
//!
//! An aggregate's decision is a pure function of its state, the command and its services
//! ([`Decide::decide`], in the aggregate's `decide.rs`); writing the events to cqrs-es's sink,
//! which applies each to the aggregate as it goes, is the same for all four aggregates and is
//! written once here ([`handle`]).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

/// An aggregate whose command handling is a pure decision.
pub(crate) trait Decide: Aggregate {
    /// The events `command` produces on the current state (none when what it reports is
    /// already reflected), or why it is refused.
    fn decide(
        &self,
        command: Self::Command,
        services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;
}

/// Decides `command` and writes the events to `sink` (which applies them to `aggregate`):
/// the body of [`Aggregate::handle`] for every aggregate.
pub(crate) async fn handle<A: Decide>(
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
    sink: &EventSink<A>,
) -> Result<(), A::Error> {
    for event in aggregate.decide(command, services)? {
        sink.write(event, aggregate).await;
    }
    Ok(())
}

/// A command on an aggregate that exists: its state so far and the command's name, for the
/// errors that name it. Only [`Existing::of`] makes one — refusing with the aggregate's
/// `NotFound` before the creation command — so the per-command functions that take it cannot
/// run on an aggregate that does not exist, and the dispatch needs no `unreachable!` arm.
pub(crate) struct Existing<'a, S> {
    /// The state the creation event started.
    pub(crate) state: &'a S,
    /// The command's name (`approve`, `cancel`, …).
    pub(crate) command: &'static str,
}

impl<'a, S> Existing<'a, S> {
    /// The existing state for `command`, or `not_found` before the creation event.
    pub(crate) fn of<E>(
        state: Option<&'a S>,
        command: &'static str,
        not_found: E,
    ) -> Result<Self, E> {
        state.map(|state| Self { state, command }).ok_or(not_found)
    }
}

impl<S> std::ops::Deref for Existing<'_, S> {
    type Target = S;

    fn deref(&self) -> &S {
        self.state
    }
}
