//! The ways a host's closure panics, for the tests that check a panic costs one connection
//! or one request and never the hub.

use std::panic;

/// Every way [`panic_as`] panics: with a message; with a payload whose own drop panics;
/// with one whose drop panics with another such payload in turn. Dropped where the panic
/// was caught, the last two used to take the whole hub down (`Error::Failed`).
pub(crate) const PANICS: [&str; 3] = ["plain", "once", "twice"];

/// Panics the way named `how` (one of [`PANICS`]).
pub(crate) fn panic_as(how: &str) -> ! {
    match how {
        "plain" => panic!("a bug in the host's closure"),
        "once" => panic::panic_any(PanicOnDrop { again: false }),
        "twice" => panic::panic_any(PanicOnDrop { again: true }),
        other => unreachable!("no panic named {other:?}"),
    }
}

/// A panic payload whose own drop panics: with a message, or (`again`) with another such
/// payload, whose drop would panic in turn.
#[derive(Debug)]
pub(crate) struct PanicOnDrop {
    again: bool,
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if self.again {
            panic::panic_any(PanicOnDrop { again: false });
        }
        panic!("dropping the panic's payload panics too");
    }
}
