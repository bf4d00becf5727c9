//! How long a test waits: every wait is bounded by [`TIMEOUT`], and a condition that
//! nothing announces is looked at again every [`PACE`] (see
//! [`EventLog::wait_until`](super::EventLog::wait_until) and
//! [`stats_when`](super::stats_when)).

use std::time::Duration;

/// The longest any single wait may take before the test fails. Never reached on success,
/// so it can be generous: the tests run in parallel on loaded machines.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a polled condition waits for something to happen before it is checked again.
pub(crate) const PACE: Duration = Duration::from_millis(5);
