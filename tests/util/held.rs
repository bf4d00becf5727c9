//! A dispatcher held inside a host closure on purpose: the hub's accept filter waits at a
//! gate the test opens, so the dispatcher takes no command meanwhile (its budget fills, it
//! lags). Bounded by [`TIMEOUT`], so a failing test never leaves a dispatcher stuck.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use hubcast::HubBuilder;

use super::TIMEOUT;

/// The gate of an accept filter installed by [`held_in_accept_filter`].
pub(crate) struct HeldFilter {
    entered: Receiver<()>,
    release: Sender<()>,
}

/// `builder` with an accept filter that, for each connection, says it was entered and
/// waits until [`HeldFilter::release`] (or [`TIMEOUT`]), then accepts.
pub(crate) fn held_in_accept_filter(builder: HubBuilder) -> (HubBuilder, HeldFilter) {
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (entered_tx, released) = (Mutex::new(entered_tx), Mutex::new(released));
    let builder = builder.accept_filter(move |_| {
        let _ = entered_tx.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
        true
    });
    (builder, HeldFilter { entered, release })
}

impl HeldFilter {
    /// Waits until the dispatcher is inside the filter; fails the test after [`TIMEOUT`].
    pub(crate) fn wait_entered(&self) {
        self.entered
            .recv_timeout(TIMEOUT)
            .expect("the accept filter runs");
    }

    /// Lets the dispatcher out of the filter.
    pub(crate) fn release(&self) {
        self.release.send(()).expect("the accept filter waits");
    }
}
