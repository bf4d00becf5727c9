//! Topics: named groups of clients, each with its own numbered stream.
//!
//! Each invariant has one owner:
//!
//! - [`table`]: the host-side table under the registry's lock — names, ids with
//!   generations, who belongs where, and the limits a `join` checks. It is what makes
//!   `join`, `leave` and `publish` exact for the host.
//! - [`members`]: the dispatcher's copy of membership, applied in command order, with the
//!   topics *kept* (no member, but a replay ring) and what they hold.
//! - [`stream`]: a stream's numbers and replay ring, and what every ring costs together.
//! - [`order`]: the ordering of a client's own joins and leaves against the host's.
//! - [`presence`]: who is in a topic as its members are told: one entry per user, the
//!   `#presence` changes and `#members` lists.
//!
//! None of them touches a socket; the dispatcher applies them in
//! `dispatcher::membership`.

pub(crate) mod members;
pub(crate) mod order;
pub(crate) mod presence;
pub(crate) mod stream;
pub(crate) mod table;

pub(crate) use table::{check_name, TopicId, TopicLimits, TopicTable};
