//! User keys at admission (`Admit::user`): a key is checked, and its user's clients counted
//! against `max_clients_per_user`, just before the connection goes live. The index itself
//! (`Registry::users`) is in the shared registry, written as a client goes live and leaves.
//!
//! Only the dispatcher adds clients to the index, and a connection that passes here goes
//! live in the same step (`go_live`, after the WebSocket `101` at most), so the check and
//! the admission cannot be split by another admission: of N connections of one user
//! arriving at once, exactly the cap are admitted.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::{storm, Dispatcher};
use crate::Admit;

/// Why a connection's user turned it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UserRefusal {
    /// Its key was empty or too long: rejected as by the authenticator.
    Invalid,
    /// Its user had `max_clients_per_user` clients already.
    AtCap,
}

impl UserRefusal {
    /// The WebSocket answer: `403` as for any rejection, `429` for too many tabs, so a
    /// page can tell them apart.
    #[cfg(feature = "websocket")]
    pub(super) fn refusal(self) -> crate::wire::Refused {
        match self {
            UserRefusal::Invalid => crate::wire::refusal(403, "invalid user key"),
            UserRefusal::AtCap => crate::wire::refusal(429, "too many connections for this user"),
        }
    }
}

/// Whether `key` may be a user key: 1 to `Admit::MAX_USER_LEN` bytes.
pub(super) fn valid_key(key: &str) -> bool {
    (1..=Admit::MAX_USER_LEN).contains(&key.len())
}

impl Dispatcher {
    /// Checks the user `admit` gives a connection from `addr`, if any, just before it goes
    /// live; a refusal is counted (an invalid key in `rejected`, one over the cap in
    /// `user_cap_refused`) and logged through the storm logs here, and the caller closes
    /// the connection without counting it again.
    pub(super) fn check_user(&mut self, addr: SocketAddr, admit: &Admit) -> Option<UserRefusal> {
        let user = admit.user.as_deref()?;
        let counters = &self.shared.counters;
        if !valid_key(user) {
            counters.rejected.fetch_add(1, Relaxed);
            let len = user.len();
            self.admission.misbehaved.record(
                storm::CLIENTS,
                "invalid user key",
                self.now,
                format_args!(
                    "rejected {addr}: a user key of {len} bytes (1 to {} allowed)",
                    Admit::MAX_USER_LEN
                ),
            );
            return Some(UserRefusal::Invalid);
        }
        let max = self.config.max_clients_per_user?;
        if self.shared.registry().user_len(user) < max {
            return None;
        }
        counters.user_cap_refused.fetch_add(1, Relaxed);
        self.admission.refuse_logged(
            "at max_clients_per_user",
            self.now,
            format_args!("refused {addr}: its user has {max} clients (max_clients_per_user)"),
        );
        Some(UserRefusal::AtCap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_in_bytes_and_never_empty() {
        assert!(!valid_key(""));
        assert!(valid_key("a"));
        assert!(valid_key(&"é".repeat(128)));
        assert!(!valid_key(&"é".repeat(129)));
        assert!(valid_key(&"x".repeat(Admit::MAX_USER_LEN)));
        assert!(!valid_key(&"x".repeat(Admit::MAX_USER_LEN + 1)));
    }
}
