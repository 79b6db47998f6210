//! How the executor tells the outside world what happens.

use crate::journal::NewEvent;

/// Receives every journaled event, output tails and resume explanations.
pub trait Observer: Send {
    /// An event was committed.
    fn event(&mut self, event: &NewEvent);
    /// The events of one commit have all been passed to [`Observer::event`]:
    /// a good moment to write what was buffered.
    fn committed(&mut self) {}
    /// A line of a running step's output.
    fn tail(&mut self, _key: &str, _line: &str) {}
    /// Why a step is reused or run again on resume (`--explain`).
    fn explain(&mut self, _key: &str, _reused: bool, _why: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _event: &NewEvent) {}
}
