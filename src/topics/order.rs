//! The order of joins and leaves. The host decides them under the registry's lock and sends
//! them as commands, which the dispatcher applies later; a client's own `#join` and `#leave`
//! are decided and applied by the dispatcher at once. Both kinds are numbered as they are
//! decided ([`Decisions`]), so that a host decision still on its way never undoes a later
//! client decision for the same topic ([`Applied`] and [`Fences`]).

use super::TopicId;

/// Numbers every join and leave as it is decided (kept in the registry, under its lock).
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    /// The number of the last decision.
    last: u64,
    /// The number of the last decision the host made.
    last_host: u64,
}

impl Decisions {
    /// Numbers a decision of the host's; its command carries the number.
    pub(crate) fn host(&mut self) -> u64 {
        self.last += 1;
        self.last_host = self.last;
        self.last
    }

    /// Numbers a client's own decision. Returns its number and that of the host's last
    /// decision before it (see [`Fences::fence`]).
    pub(crate) fn client(&mut self) -> (u64, u64) {
        self.last += 1;
        (self.last, self.last_host)
    }
}

/// A client's own join or leave of `topic`, numbered `op`, decided while the host's
/// decisions up to `host_before` were not all applied yet.
#[derive(Debug, Clone, Copy)]
struct Fence {
    topic: TopicId,
    op: u64,
    host_before: u64,
}

/// A client's decisions applied ahead of host decisions made before them: empty unless a
/// `Hub::join` or `Hub::leave` is in flight while the client changes the same topic itself.
#[derive(Debug, Default)]
pub(crate) struct Fences(Vec<Fence>);

/// Which host decisions the dispatcher has applied (in the dispatcher).
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The number of the last host decision that reached the dispatcher.
    host: u64,
}

impl Applied {
    /// Whether to apply the host's decision `op` about `topic` for a client with `fences`:
    /// not if the client's own decision about that topic came after it. Host commands
    /// arrive in the order they were decided, so once one numbered past a fence has
    /// arrived, that fence has done its work and goes.
    pub(crate) fn admit(&mut self, fences: &mut Fences, topic: TopicId, op: u64) -> bool {
        self.arrived(op);
        let superseded = fences.0.iter().any(|f| f.topic == topic && f.op > op);
        fences.0.retain(|f| f.host_before > op);
        !superseded
    }

    /// The number of the last host decision that reached the dispatcher: while it is the
    /// host's last decision, every host join and leave has been applied.
    pub(crate) fn last(&self) -> u64 {
        self.host
    }

    /// The host's decision `op` reached the dispatcher (applied or not).
    pub(crate) fn arrived(&mut self, op: u64) {
        self.host = op;
    }

    /// A client's own decision `op` about `topic` (with `host_before` from
    /// [`Decisions::client`]) is applied now: host decisions about that topic made before
    /// it and still on their way must not undo it.
    pub(crate) fn fence(&self, fences: &mut Fences, topic: TopicId, (op, host_before): (u64, u64)) {
        if host_before <= self.host {
            // Every host decision so far has been applied: nothing to hold back.
            return;
        }
        let applied = self.host;
        fences
            .0
            .retain(|f| f.topic != topic && f.host_before > applied);
        fences.0.push(Fence {
            topic,
            op,
            host_before,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TopicId = TopicId {
        index: 0,
        generation: 0,
    };
    const B: TopicId = TopicId {
        index: 1,
        generation: 0,
    };

    #[test]
    fn a_host_decision_made_before_a_clients_own_is_not_applied_after_it() {
        let (mut decided, mut applied, mut fences) =
            (Decisions::default(), Applied::default(), Fences::default());
        // The host leaves A for the client (1), and joins B (2); neither has arrived when
        // the client joins A itself (3).
        let (leave_a, join_b) = (decided.host(), decided.host());
        let own = decided.client();
        assert_eq!(own, (3, 2));
        applied.fence(&mut fences, A, own);
        // The host's leave arrives: the client's later join stands.
        assert!(!applied.admit(&mut fences, A, leave_a));
        // Another topic is not held back, and once the host's decision 2 has arrived the
        // fence is gone.
        assert!(applied.admit(&mut fences, B, join_b));
        assert!(fences.0.is_empty());
        let later = decided.host();
        assert!(applied.admit(&mut fences, A, later));
    }

    #[test]
    fn no_fence_when_every_host_decision_was_applied() {
        let (mut decided, mut applied, mut fences) =
            (Decisions::default(), Applied::default(), Fences::default());
        let op = decided.host();
        assert!(applied.admit(&mut fences, A, op));
        applied.fence(&mut fences, A, decided.client());
        assert!(fences.0.is_empty());
    }

    #[test]
    fn a_newer_own_decision_replaces_the_fence_of_its_topic() {
        let (mut decided, mut applied, mut fences) =
            (Decisions::default(), Applied::default(), Fences::default());
        let host = decided.host();
        applied.fence(&mut fences, A, decided.client());
        applied.fence(&mut fences, A, decided.client());
        assert_eq!(fences.0.len(), 1);
        assert!(!applied.admit(&mut fences, A, host));
        assert!(fences.0.is_empty());
    }
}
