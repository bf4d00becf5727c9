//! Presence: who is in a topic, as its members are told (`docs/PROTOCOL.md`, "Presence").
//!
//! A topic whose host options ask for it (`TopicOptions::presence`) keeps one *entry* per
//! user (`Admit::user`) or, for a connection without a user key, per connection, with how
//! many of the entry's connections are in the topic: the first one in makes the entry join,
//! the last one out makes it leave, so three tabs of one user are one member. Each change
//! of entries is the body of one `#presence` message, which the dispatcher numbers in the
//! topic's stream (`Target::Presence`): a snapshot (`#members`) at a position and the
//! changes after it are one exact view, and a resume replays changes with messages.
//!
//! Over the topic's limit of entries, names stop: one `count` message says so, and
//! snapshots give the count only, until the entries fall to three quarters of the limit,
//! when one `all` message gives the whole list again. Meanwhile a changed count is told at
//! most once per `presence_counts` period. So a room of any size costs one message per
//! member per change at most, and a room near its limit does not flap.
//!
//! Pure: no clock, no socket; the dispatcher applies it (`dispatcher/membership.rs`).

use std::collections::HashMap;
use std::fmt::{self, Display, Formatter, Write as _};
use std::sync::Arc;
use std::time::Duration;

use crate::ClientId;

/// A presence entry: a user, or a connection without a user key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Who {
    // In this order: lists put connections without a user key first, then users by key.
    Client(ClientId),
    User(Arc<str>),
}

impl Who {
    /// The entry of a connection: its user if it has one.
    pub(crate) fn of(client: ClientId, user: Option<&Arc<str>>) -> Who {
        match user {
            Some(user) => Who::User(Arc::clone(user)),
            None => Who::Client(client),
        }
    }
}

/// `u:<user key>` (each white-space or control character and each `\` written
/// `\u{<hex>}`, so a key is one word and two keys never read alike) or `c:<client id>`.
impl Display for Who {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Who::Client(id) => write!(f, "c:{}", id.0),
            Who::User(key) => {
                f.write_str("u:")?;
                for c in key.chars() {
                    if c.is_whitespace() || c.is_control() || c == '\\' {
                        write!(f, "\\u{{{:x}}}", u32::from(c))?;
                    } else {
                        f.write_char(c)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// One topic's presence.
#[derive(Debug)]
pub(crate) struct Presence {
    /// The most entries whose names are published.
    limit: usize,
    /// Each entry, with how many of its connections are in the topic (at least one).
    entries: HashMap<Who, u32>,
    /// Past the limit: names are not published, until the entries are down to 3/4 of it.
    reduced: bool,
    /// While reduced, how often a changed count is told, if ever.
    count_every: Option<Duration>,
    /// While reduced, the count last told.
    told: usize,
    /// While reduced, whether a count is due (see [`count_due`](Self::count_due)).
    due: bool,
}

impl Presence {
    pub(crate) fn new(limit: usize, count_every: Option<Duration>) -> Presence {
        Presence {
            limit,
            entries: HashMap::new(),
            reduced: false,
            count_every,
            told: 0,
            due: false,
        }
    }

    /// After a change that told nothing: how long until the new count is to be told (once,
    /// however many changes come meanwhile), if it is to be told and is not due already.
    pub(crate) fn count_due(&mut self) -> Option<Duration> {
        let every = self.count_every?;
        if !self.reduced || self.due || self.entries.len() == self.told {
            return None;
        }
        self.due = true;
        Some(every)
    }

    /// The count is due: the body of its `#presence` message, if it still differs from the
    /// last one told (and names are still withheld).
    pub(crate) fn count_now(&mut self) -> Option<String> {
        self.due = false;
        let n = self.entries.len();
        (self.reduced && n != self.told).then(|| {
            self.told = n;
            format!("count {n}")
        })
    }

    /// A connection of `who` joined: the body of the `#presence` message to number, if
    /// the members are to be told.
    pub(crate) fn join(&mut self, who: Who) -> Option<String> {
        if let Some(count) = self.entries.get_mut(&who) {
            *count += 1;
            return None;
        }
        let said = (!self.reduced).then(|| format!("join {who}"));
        self.entries.insert(who, 1);
        if !self.reduced && self.entries.len() > self.limit {
            self.reduced = true;
            self.told = self.entries.len();
            return Some(format!("count {}", self.told));
        }
        said
    }

    /// A connection of `who` left: the body of the `#presence` message to number, if the
    /// members are to be told.
    pub(crate) fn leave(&mut self, who: &Who) -> Option<String> {
        let count = self.entries.get_mut(who)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.entries.remove(who);
        if !self.reduced {
            return Some(format!("leave {who}"));
        }
        if self.entries.len() <= self.limit - self.limit.div_ceil(4) {
            self.reduced = false;
            return Some(self.list());
        }
        None
    }

    /// The members as a snapshot tells them: `all <n> <member>...` (sorted) or, over the
    /// limit, `count <n>`.
    pub(crate) fn list(&self) -> String {
        let n = self.entries.len();
        if self.reduced {
            return format!("count {n}");
        }
        let mut names: Vec<&Who> = self.entries.keys().collect();
        names.sort_unstable();
        let mut out = format!("all {n}");
        for who in names {
            // Writing to a String cannot fail.
            let _ = write!(out, " {who}");
        }
        out
    }

    /// How many entries there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Who {
        Who::User(Arc::from(name))
    }

    #[test]
    fn one_entry_per_user_first_in_joins_last_out_leaves() {
        let mut p = Presence::new(10, None);
        assert_eq!(p.join(user("alice")).as_deref(), Some("join u:alice"));
        assert_eq!(p.join(user("alice")), None);
        assert_eq!(p.join(user("alice")), None);
        assert_eq!(
            p.join(Who::Client(ClientId(7))).as_deref(),
            Some("join c:7")
        );
        assert_eq!(p.list(), "all 2 c:7 u:alice");
        assert_eq!(p.leave(&user("alice")), None);
        assert_eq!(p.leave(&user("alice")), None);
        assert_eq!(p.leave(&user("alice")).as_deref(), Some("leave u:alice"));
        assert_eq!(p.leave(&user("alice")), None, "not in: nothing to say");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn keys_are_one_word_and_never_read_alike() {
        assert_eq!(user("a b\\c\n").to_string(), r"u:a\u{20}b\u{5c}c\u{a}");
        assert_ne!(user(r"a\u{20}").to_string(), user("a ").to_string());
    }

    #[test]
    fn over_the_limit_names_stop_until_three_quarters() {
        let mut p = Presence::new(3, None);
        for name in ["a", "b", "c"] {
            assert!(p.join(user(name)).is_some());
        }
        assert_eq!(p.join(user("d")).as_deref(), Some("count 4"));
        assert_eq!(p.join(user("e")), None);
        assert_eq!(p.list(), "count 5");
        assert_eq!(p.leave(&user("e")), None);
        assert_eq!(p.leave(&user("d")), None, "3 is not under 3/4 of 3");
        assert_eq!(p.leave(&user("c")).as_deref(), Some("all 2 u:a u:b"));
        assert_eq!(p.leave(&user("b")).as_deref(), Some("leave u:b"));
    }

    #[test]
    fn while_names_are_withheld_a_changed_count_is_due_once() {
        let second = Some(Duration::from_secs(1));
        let mut p = Presence::new(1, second);
        assert!(p.join(user("a")).is_some());
        assert_eq!(p.count_due(), None, "names are told");
        assert_eq!(p.join(user("b")).as_deref(), Some("count 2"));
        assert_eq!(p.count_due(), None, "told just now");
        assert_eq!(p.join(user("c")), None);
        assert_eq!(p.count_due(), second);
        assert_eq!(p.join(user("d")), None);
        assert_eq!(p.count_due(), None, "due already");
        assert_eq!(p.count_now().as_deref(), Some("count 4"));
        assert_eq!(p.count_now(), None, "nothing new");
        assert_eq!(p.leave(&user("d")), None);
        assert_eq!(p.count_due(), second);
        assert_eq!(p.join(user("d")), None);
        assert_eq!(p.count_now(), None, "back to what was told");
        let mut never = Presence::new(0, None);
        assert!(never.join(user("a")).is_some());
        assert!(never.join(user("b")).is_none());
        assert_eq!(never.count_due(), None);
    }

    #[test]
    fn a_limit_of_zero_gives_counts_only() {
        let mut p = Presence::new(0, None);
        assert_eq!(p.join(user("a")).as_deref(), Some("count 1"));
        assert_eq!(p.list(), "count 1");
        assert_eq!(p.leave(&user("a")).as_deref(), Some("all 0"));
    }
}
