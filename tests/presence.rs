//! Presence per topic and last messages on join (issue 19; `docs/PROTOCOL.md`, "Presence"),
//! over real sockets, with `Protocol::Sequenced` clients on TCP lines:
//!
//! - a member set kept by the client rule (`#members` replaces it at its position, each
//!   `#presence` after that position changes it) equals what the host sees (`Hub::members`,
//!   one entry per user) after a storm of joins, leaves and disconnects, and again after the
//!   observer's connection is cut and it resumes from its last position while more changes
//!   happen;
//! - three connections of one user are one entry: the first in joins, the last out leaves;
//! - `#join @t <n>` and the topic's `history` replay the last data messages between
//!   `#resumed` and the live ones, with no gap and no duplicate while the host publishes,
//!   within what the ring holds, presence messages among them not counted;
//! - over `presence_limit`, counts instead of names, and the whole list again at 3/4;
//! - `#who` answers members, refuses non-members and topics without presence;
//! - host events (`presence_events`) in the order the hub applies the changes, and none
//!   without the knob; `Hub::members` and `Hub::member_count`; a `topic_options` closure that
//!   panics gives the defaults and is counted;
//! - the Python client (`clients/python`) keeps the member set by the same rule, asks
//!   `#who`, and joins with history.
//!
//! Nothing here sleeps: every wait is on a line a client reads or an event of the hub,
//! bounded by `util::TIMEOUT`. Markers published by the host after a change has been
//! applied tell a client it has seen everything before them.

mod util;

use std::collections::BTreeSet;
use std::thread;

use hubcast::{Admit, Auth, AuthRequest, ClientId, Event, Hub, HubBuilder, Member, TopicOptions};
use util::*;

/// The presence topic of the scenarios.
const ROOM: &str = "room";

/// An authenticator that admits `user:<key>` as that user, `in:<topic>` into that topic
/// (as it is admitted), anything else without either (the first line of every client here
/// is its token).
fn by_token(request: &AuthRequest<'_>) -> Auth {
    let token = Wire::token_of(request).unwrap_or_default();
    if let Some(topic) = token.strip_prefix("in:") {
        return Auth::Admit(Admit::new().topic(topic));
    }
    match token.strip_prefix("user:") {
        Some(key) => Auth::Admit(Admit::new().user(key)),
        None => Auth::Accept,
    }
}

/// A hub of rooms (any client joins any topic) whose clients show a token, with these
/// topic options.
fn hub_with(options: impl Fn(&str) -> TopicOptions + Send + Sync + 'static) -> HubBuilder {
    rooms().authenticate(by_token).topic_options(options)
}

/// Presence on every topic.
fn presence(_: &str) -> TopicOptions {
    TopicOptions::new().presence(true)
}

/// A user key as members are told it: each white-space or control character and each `\`
/// written `\u{<hex>}`.
fn escape(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_whitespace() || c.is_control() || c == '\\' {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A member's presence entry: `u:<key>`, or `c:<id>` without a user.
fn entry(member: &Member) -> String {
    match &member.user {
        Some(key) => format!("u:{}", escape(key)),
        None => format!("c:{}", member.client.as_u64()),
    }
}

/// The entry of an anonymous client.
fn anon(id: ClientId) -> String {
    format!("c:{}", id.as_u64())
}

/// The host's view of a topic's presence: its members' entries, one per user.
fn host_view(hub: &Hub, topic: &str) -> BTreeSet<String> {
    hub.members(topic).iter().map(entry).collect()
}

/// A client on TCP lines that showed a token.
struct Client {
    peer: Peer,
    id: ClientId,
}

impl Client {
    /// Connects with `token` (`user:<key>`, or anything for no user), reads `#at` and waits
    /// for the `Connected` event.
    fn connect(hub: &Hub, events: &mut EventLog, token: &str) -> Client {
        let mut peer = Peer::connect(hub.local_addr());
        peer.write(format!("{token}\n").as_bytes());
        let id = events.connected(peer.addr());
        read_at(&mut peer);
        Client { peer, id }
    }

    fn say(&mut self, line: &str) {
        self.peer.write(format!("{line}\n").as_bytes());
    }

    fn line(&mut self) -> String {
        self.peer.read_text_line()
    }

    /// Reads lines until one starts with `prefix`; returns it.
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line();
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// `#join @topic`, and waits for `#joined` (other lines are skipped).
    fn join(&mut self, topic: &str) {
        self.say(&format!("#join @{topic}"));
        self.until(&format!("#joined @{topic} "));
    }

    /// `#leave @topic`, and waits for `#left`.
    fn leave(&mut self, topic: &str) {
        self.say(&format!("#leave @{topic}"));
        self.until(&format!("#left @{topic}"));
    }
}

/// A client's view of one topic: the member set by the client rule, and the topic's stream
/// checked for order (every numbered message, data or `#presence`, the one after the last).
#[derive(Debug)]
struct View {
    /// `@topic`.
    stream: String,
    /// The set's position: the `#members` or `#presence` it was last changed by.
    at: u64,
    /// The entries, or `None` while over the limit (counts only).
    names: Option<BTreeSet<String>>,
    /// How many entries, as last told.
    count: usize,
    /// The last numbered message of the stream taken (from `#joined`, or `#resumed`'s
    /// first minus one).
    last: u64,
    /// The data messages taken, as (seq, payload).
    data: Vec<(u64, String)>,
    /// Every line of the topic, in order, for failure messages and checks.
    lines: Vec<String>,
}

impl View {
    fn new(topic: &str) -> View {
        View {
            stream: format!("@{topic}"),
            at: 0,
            names: None,
            count: 0,
            last: 0,
            data: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// The entries; fails the test while over the limit.
    fn names(&self) -> &BTreeSet<String> {
        self.names
            .as_ref()
            .unwrap_or_else(|| panic!("over the limit: {self:?}"))
    }

    /// The next numbered message of the stream: it must follow the last one.
    fn numbered(&mut self, seq: u64, line: &str) {
        assert_eq!(
            seq,
            self.last + 1,
            "{line:?} after {}: a gap or a duplicate; lines: {:#?}",
            self.last,
            self.tail()
        );
        self.last = seq;
    }

    /// Takes one line the client read; returns whether it was of this topic.
    fn take(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split(' ').collect();
        let mine = match words.as_slice() {
            ["#joined", s, _, seq] if *s == self.stream => {
                self.last = seq.parse().expect("seq");
                true
            }
            ["#resumed", s, _, from, _] if *s == self.stream => {
                self.last = from.parse::<u64>().expect("from") - 1;
                true
            }
            ["#members", s, _, seq, rest @ ..] if *s == self.stream => {
                self.at = seq.parse().expect("seq");
                self.set(rest, line);
                true
            }
            ["#presence", s, seq, rest @ ..] if *s == self.stream => {
                let seq: u64 = seq.parse().expect("seq");
                self.numbered(seq, line);
                if seq > self.at {
                    self.at = seq;
                    self.change(rest, line);
                }
                true
            }
            [head, ..] if head.ends_with(&self.stream) && !head.starts_with('#') => {
                let seq: u64 = head[..head.len() - self.stream.len()].parse().expect("seq");
                self.numbered(seq, line);
                let payload = line.split_once(' ').map_or("", |(_, p)| p);
                self.data.push((seq, payload.to_owned()));
                true
            }
            _ => false,
        };
        if mine || line.split(' ').nth(1) == Some(&self.stream) {
            self.lines.push(line.to_owned());
        }
        mine
    }

    /// `all <n> <member>...` or `count <n>`: the whole set.
    fn set(&mut self, words: &[&str], line: &str) {
        match words {
            ["all", n, members @ ..] => {
                let names: BTreeSet<String> = members.iter().map(|m| (*m).to_owned()).collect();
                assert_eq!(n.parse::<usize>().ok(), Some(names.len()), "{line}");
                assert_eq!(names.len(), members.len(), "a member twice: {line}");
                self.count = names.len();
                self.names = Some(names);
            }
            ["count", n] => {
                self.count = n.parse().expect("a count");
                self.names = None;
            }
            _ => panic!("not a member list: {line:?}"),
        }
    }

    /// One `#presence` change after the set's position.
    fn change(&mut self, words: &[&str], line: &str) {
        match words {
            ["join", who] => {
                let names = self.names.as_mut().expect("a join while over the limit");
                assert!(names.insert((*who).to_owned()), "{line}: in already");
                self.count += 1;
            }
            ["leave", who] => {
                let names = self.names.as_mut().expect("a leave while over the limit");
                assert!(names.remove(*who), "{line}: not in");
                self.count -= 1;
            }
            _ => self.set(words, line),
        }
    }

    fn tail(&self) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(12)..]
    }
}

/// `#join @topic`: returns the view after its `#joined` (a `#members` that follows is read
/// with what comes next).
fn joined_view(client: &mut Client, topic: &str) -> View {
    let mut view = View::new(topic);
    client.say(&format!("#join @{topic}"));
    let joined = client.until(&format!("#joined @{topic} "));
    view.take(&joined);
    view
}

/// Reads `client`'s lines into `view` until the data message `payload` of the topic.
fn read_until_data(client: &mut Client, view: &mut View, payload: &str) {
    while !view.data.last().is_some_and(|(_, p)| p == payload) {
        let line = client.line();
        view.take(&line);
    }
}

/// The numbered lines of the topic (data and `#presence`) in `view.lines` from index
/// `from`.
fn numbered_lines(view: &View, from: usize) -> Vec<&String> {
    view.lines[from..]
        .iter()
        .filter(|l| {
            l.starts_with("#presence ") || (!l.starts_with('#') && l.contains(&view.stream))
        })
        .collect()
}

// ---------------------------------------------------------------------- the member set

/// How a storm client ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// In the topic.
    In,
    /// Out of it, connected.
    Out,
    /// Disconnected while in it.
    Gone,
}

/// Joins and leaves the room `rounds` times, then ends as `end` says; the client back,
/// unless gone.
fn churn(mut client: Client, rounds: usize, end: End) -> Option<Client> {
    for _ in 0..rounds {
        client.join(ROOM);
        client.leave(ROOM);
    }
    match end {
        End::In => {
            client.join(ROOM);
            Some(client)
        }
        End::Out => Some(client),
        End::Gone => {
            client.join(ROOM);
            drop(client);
            None
        }
    }
}

/// The tokens of a storm: users sharing keys (one with a space, escaped), and clients
/// without one.
const STORM: [&str; 12] = [
    "user:ann",
    "user:ann",
    "user:ann",
    "user:ben",
    "user:ben",
    "user:bob smith",
    "user:bob smith",
    "anonymous",
    "anonymous",
    "anonymous",
    "anonymous",
    "anonymous",
];

/// Runs a storm of `clients` on threads, each joining and leaving `rounds` times; waits
/// for all of them, and for the `Disconnected` of those that end gone. Returns those
/// still connected.
fn storm(events: &mut EventLog, clients: Vec<Client>, rounds: usize) -> Vec<Client> {
    let ends = [End::In, End::Out, End::Gone];
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let end = ends[i % ends.len()];
            let id = client.id;
            (id, end, thread::spawn(move || churn(client, rounds, end)))
        })
        .collect();
    let mut left = Vec::new();
    for (id, end, thread) in threads {
        let client = thread.join().expect("a storm client failed");
        match client {
            Some(client) => left.push(client),
            None => {
                assert!(matches!(end, End::Gone));
                events.disconnected(id);
            }
        }
    }
    left
}

/// A storm of joins, leaves and disconnects (users sharing keys, clients without): the
/// observer's set by the client rule equals the host's view once the storm is over. Then
/// its connection is cut; while more clients storm the room, it reconnects and resumes
/// from its last position: its set is exact again, and the room's stream reached it with
/// no gap and no duplicate, across the cut.
#[test]
fn a_storm_of_members_leaves_the_observer_with_the_hosts_view() {
    const ROUNDS: usize = 8;
    let hub = hub_with(presence).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut observer = Client::connect(&hub, &mut events, "anonymous");
    let mut view = View::new(ROOM);
    observer.say("#join @room");
    loop {
        let line = observer.line();
        view.take(&line);
        if line.starts_with("#members @room ") {
            break;
        }
    }
    assert_eq!(view.names(), &BTreeSet::from([anon(observer.id)]));
    let (epoch, at) = {
        let joined = &view.lines[0];
        let w: Vec<&str> = joined.split(' ').collect();
        assert_eq!(w[0], "#joined", "{:?}", view.lines);
        (w[2].to_owned(), w[3].parse::<u64>().expect("seq"))
    };
    assert_eq!(
        view.at, at,
        "#members at #joined's position: {:?}",
        view.lines
    );

    let clients: Vec<Client> = STORM
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    let stayed = storm(&mut events, clients, ROUNDS);
    hub.publish(ROOM, "storm over").expect("publish");
    read_until_data(&mut observer, &mut view, "storm over");
    let host = host_view(&hub, ROOM);
    assert_eq!(view.names(), &host, "lines: {:#?}", view.tail());
    assert!(
        host.contains("u:ann") && host.contains("u:bob\\u{20}smith"),
        "{host:?}"
    );
    assert_eq!(view.count, host.len());
    // Every change was told: at least a join and a leave per round of the first client.
    let changes = view
        .lines
        .iter()
        .filter(|l| l.starts_with("#presence "))
        .count();
    assert!(changes >= 2 * ROUNDS, "{changes} changes");

    // Cut. The old connection leaves (its own entry goes); more clients storm the room
    // while the observer is away and while it comes back.
    let position = view.last;
    let old = observer.id;
    drop(observer);
    events.disconnected(old);
    let clients: Vec<Client> = STORM[..6]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    let storming = thread::spawn(move || {
        let ends = [End::In, End::Out];
        let threads: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| thread::spawn(move || churn(client, ROUNDS / 2, ends[i % 2])))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a storm client failed"))
            .collect::<Vec<_>>()
    });
    let mut observer = Client::connect(&hub, &mut events, "anonymous");
    observer.say(&format!("#resume @room {epoch} {position}"));
    let from = view.lines.len();
    let stayed_too = storming.join().expect("the second storm");
    hub.publish(ROOM, "second storm over").expect("publish");
    read_until_data(&mut observer, &mut view, "second storm over");
    let answers: Vec<&String> = view.lines[from..]
        .iter()
        .filter(|l| l.starts_with("#resumed ") || l.starts_with("#noresume "))
        .collect();
    assert!(
        answers.len() == 1
            && answers[0].starts_with(&format!("#resumed @room {epoch} {} ", position + 1)),
        "{answers:?}"
    );
    let host = host_view(&hub, ROOM);
    assert_eq!(view.names(), &host, "lines: {:#?}", view.tail());
    assert!(host.contains(&anon(observer.id)), "{host:?}");
    assert!(!host.contains(&anon(old)), "{host:?}");
    assert_eq!(hub.member_count(ROOM), hub.members(ROOM).len());
    drop((stayed, stayed_too));
}

/// Reads `client`'s lines until the data message `payload` of `topic`; returns the lines
/// before it.
fn lines_until(client: &mut Client, topic: &str, payload: &str) -> Vec<String> {
    let end = format!("@{topic} {payload}");
    let mut lines = Vec::new();
    loop {
        let line = client.line();
        if line.ends_with(&end) && !line.starts_with('#') {
            return lines;
        }
        lines.push(line);
    }
}

/// The `#presence` lines among `lines`, without their numbers: `join u:alice`.
fn changes(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.splitn(4, ' ').collect();
            (w[0] == "#presence").then(|| w[3].to_owned())
        })
        .collect()
}

/// Three connections of alice are one entry: the first in makes `u:alice` join, the other
/// two change nothing another member sees; two of them leaving change nothing either, and
/// the last one out makes it leave, once.
#[test]
fn the_connections_of_one_user_are_one_member() {
    let hub = hub_with(presence).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut bob = Client::connect(&hub, &mut events, "user:bob");
    bob.join(ROOM);
    let mut tabs: Vec<Client> = (0..3)
        .map(|_| Client::connect(&hub, &mut events, "user:alice"))
        .collect();
    for tab in &mut tabs {
        tab.join(ROOM);
    }
    hub.publish(ROOM, "all in").expect("publish");
    let lines = lines_until(&mut bob, ROOM, "all in");
    assert_eq!(changes(&lines), ["join u:alice"], "{lines:#?}");
    assert_eq!(
        host_view(&hub, ROOM),
        BTreeSet::from(["u:alice".to_owned(), "u:bob".to_owned()])
    );
    assert_eq!(hub.member_count(ROOM), 4);
    // A tab that joins now sees one alice, itself among her connections.
    let members = tabs[2].until("#members @room ");
    assert!(
        members.ends_with(" all 2 u:alice u:bob") || members.ends_with(" all 2 u:bob u:alice"),
        "{members}"
    );

    for tab in tabs.drain(..2) {
        let id = tab.id;
        drop(tab);
        events.disconnected(id);
    }
    hub.publish(ROOM, "two gone").expect("publish");
    let lines = lines_until(&mut bob, ROOM, "two gone");
    assert_eq!(changes(&lines), Vec::<String>::new(), "{lines:#?}");
    assert_eq!(hub.member_count(ROOM), 2);

    let last = tabs.pop().expect("the third tab");
    let id = last.id;
    drop(last);
    events.disconnected(id);
    hub.publish(ROOM, "all gone").expect("publish");
    let lines = lines_until(&mut bob, ROOM, "all gone");
    assert_eq!(changes(&lines), ["leave u:alice"], "{lines:#?}");
    assert_eq!(host_view(&hub, ROOM), BTreeSet::from(["u:bob".to_owned()]));
    // Three changes numbered: bob's own arrival (told to nobody else), alice in, alice out.
    let stats = stats_when(&hub, |s| s.presence_changes == 3);
    assert_eq!(stats.presence_changes, 3, "{stats:#?}");
}

// ------------------------------------------------------------------ last messages on join

/// A topic without presence and a member that keeps it alive, with `count` messages
/// `m1`..: returns the keeper.
fn kept(hub: &Hub, events: &mut EventLog, topic: &str, count: u64) -> Client {
    let mut keeper = Client::connect(hub, events, "keeper");
    keeper.join(topic);
    for i in 1..=count {
        hub.publish(topic, format!("m{i}")).expect("publish");
    }
    keeper
}

/// Joins with `request` (`#join @t [n]`) and reads `#joined` and, if there is one,
/// `#resumed`: returns the view after `#joined`, the join position and the `#resumed`
/// line's (from, to), reading nothing more.
fn join_with(client: &mut Client, topic: &str, request: &str) -> (View, u64, Option<(u64, u64)>) {
    let mut view = View::new(topic);
    client.say(request);
    let joined = client.until(&format!("#joined @{topic} "));
    view.take(&joined);
    let at = view.last;
    loop {
        let line = client.line();
        let w: Vec<&str> = line.split(' ').collect();
        if w[0] == "#members" {
            view.take(&line);
            continue;
        }
        if w[0] == "#resumed" {
            assert_eq!(w[1], format!("@{topic}"), "{line}");
            assert_eq!(
                w[4].parse::<u64>().ok(),
                Some(at),
                "to the join's position: {line}"
            );
            view.take(&line);
            return (view, at, Some((w[3].parse().expect("from"), at)));
        }
        // No history: the line is the first live one.
        view.take(&line);
        return (view, at, None);
    }
}

/// Joins with `request`, and once `#joined` is read has the host publish `live` to the
/// topic: returns the view once `live` is read, the join's position and the `#resumed`
/// line's (from, to) if one came. For a join that may get no history.
fn join_then_live(
    client: &mut Client,
    hub: &Hub,
    topic: &str,
    request: &str,
) -> (View, u64, Option<(u64, u64)>) {
    client.say(request);
    let mut view = View::new(topic);
    let joined = client.until(&format!("#joined @{topic} "));
    view.take(&joined);
    let at = view.last;
    hub.publish(topic, "live").expect("publish");
    read_until_data(client, &mut view, "live");
    let replay = view.lines.iter().find_map(|line| {
        let w: Vec<&str> = line.split(' ').collect();
        (w[0] == "#resumed").then(|| (w[3].parse().expect("from"), w[4].parse().expect("to")))
    });
    (view, at, replay)
}

/// `#join @t 5` in a topic with 20 messages: exactly 16 to 20, then the live ones; while a
/// host thread publishes as another client joins with 5, it gets the 5 before its join's
/// position, then every live one after it, none twice and none missing.
#[test]
fn a_join_gets_the_last_n_messages_then_the_live_ones() {
    const MORE: u64 = 300;
    let hub = hub_with(|_| TopicOptions::new()).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let _keeper = kept(&hub, &mut events, "news", 20);
    let mut first = Client::connect(&hub, &mut events, "first");
    let (mut view, at, replay) = join_with(&mut first, "news", "#join @news 5");
    assert_eq!((at, replay), (20, Some((16, 20))), "{:?}", view.lines);
    hub.publish("news", "m21").expect("publish");
    read_until_data(&mut first, &mut view, "m21");
    let want: Vec<(u64, String)> = (16..=21).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(view.data, want, "{:#?}", view.lines);
    assert!(
        !view.lines.iter().any(|l| l.starts_with("#members")),
        "no presence here: {:?}",
        view.lines
    );

    // The host publishes while the second client joins.
    let mut second = Client::connect(&hub, &mut events, "second");
    let hub = std::sync::Arc::new(hub);
    let publisher = thread::spawn({
        let hub = std::sync::Arc::clone(&hub);
        move || {
            for i in 22..=21 + MORE {
                hub.publish("news", format!("m{i}")).expect("publish");
            }
        }
    });
    let (mut view, at, replay) = join_with(&mut second, "news", "#join @news 5");
    publisher.join().expect("the publisher");
    let last = format!("m{}", 21 + MORE);
    read_until_data(&mut second, &mut view, &last);
    assert_eq!(replay, Some((at - 4, at)), "{:?}", view.lines);
    let want: Vec<(u64, String)> = (at - 4..=21 + MORE).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(view.data, want);
}

/// Past the ring (`replay_messages(8)`), `#join @t 20` gets what the ring holds: the last
/// 8, up to the join's position, in order.
#[test]
fn a_join_gets_what_the_ring_holds() {
    let hub = hub_with(|_| TopicOptions::new())
        .replay_messages(8)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let _keeper = kept(&hub, &mut events, "news", 20);
    let mut client = Client::connect(&hub, &mut events, "late");
    let (mut view, at, replay) = join_with(&mut client, "news", "#join @news 20");
    assert_eq!((at, replay), (20, Some((13, 20))), "{:?}", view.lines);
    hub.publish("news", "m21").expect("publish");
    read_until_data(&mut client, &mut view, "m21");
    let want: Vec<(u64, String)> = (13..=21).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(view.data, want);
}

/// `TopicOptions::history(3)`: a plain `#join` gets the last 3; `#join @t 0` none, and
/// `#join @t 6` six. Other topics keep the default: none.
#[test]
fn history_is_the_default_a_join_gets() {
    let hub = hub_with(|topic| {
        if topic.starts_with("cache") {
            TopicOptions::new().history(3)
        } else {
            TopicOptions::new()
        }
    })
    .bind(LOCAL)
    .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    for (request, topic, first) in [
        ("#join @cache1", "cache1", Some(8)),
        ("#join @cache2 0", "cache2", None),
        ("#join @cache3 6", "cache3", Some(5)),
        ("#join @plain", "plain", None),
    ] {
        let _keeper = kept(&hub, &mut events, topic, 10);
        let mut client = Client::connect(&hub, &mut events, "joiner");
        let (view, at, replay) = join_then_live(&mut client, &hub, topic, request);
        assert_eq!(at, 10, "{request}: {:?}", view.lines);
        assert_eq!(
            replay,
            first.map(|from| (from, 10)),
            "{request}: {:?}",
            view.lines
        );
        let mut want: Vec<(u64, String)> = (first.unwrap_or(11)..11)
            .map(|i| (i, format!("m{i}")))
            .collect();
        want.push((11, "live".to_owned()));
        assert_eq!(view.data, want, "{request}: {:?}", view.lines);
    }
}

/// A `#join` whose count is not a number is an `#error` (and joins nothing); a join whose
/// history the host refuses (`client_topics` refuses `TopicAction::Resume`) is answered
/// `#noresume @t denied`, and the client is in the topic, live from its position; a
/// history over the client's queue, `#noresume @t much`.
#[test]
fn a_join_history_is_refused_as_a_resume_is() {
    let hub = sequenced()
        .relay(hubcast::Relay::Topics)
        .client_topics(|request| {
            !(request.topic() == "secret" && request.action() == hubcast::TopicAction::Resume)
        })
        .authenticate(by_token)
        .max_frame(1024)
        .queue_bytes(4096)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut client = Client::connect(&hub, &mut events, "anonymous");
    client.say("#join @news many");
    let error = client.line();
    assert!(error.starts_with("#error join needs one @topic"), "{error}");
    assert_eq!(hub.member_count("news"), 0);

    let _keeper = kept(&hub, &mut events, "secret", 5);
    client.say("#join @secret 3");
    let joined = client.until("#joined @secret ");
    let epoch = joined.split(' ').nth(2).expect("epoch").to_owned();
    assert_eq!(joined, format!("#joined @secret {epoch} 5"));
    assert_eq!(client.line(), format!("#noresume @secret denied {epoch} 5"));
    hub.publish("secret", "live").expect("publish");
    assert_eq!(client.line(), "6@secret live");

    // 100 messages of 100 bytes: more than the client's queue may hold at once.
    let mut keeper = Client::connect(&hub, &mut events, "keeper");
    keeper.join("big");
    let long = "x".repeat(100);
    for _ in 0..100 {
        hub.publish("big", &long).expect("publish");
    }
    client.say("#join @big 100");
    let joined = client.until("#joined @big ");
    let epoch = joined.split(' ').nth(2).expect("epoch").to_owned();
    assert_eq!(client.line(), format!("#noresume @big much {epoch} 100"));
    hub.publish("big", "live").expect("publish");
    assert_eq!(client.line(), "101@big live");
    drop(keeper);
}

/// In a presence topic, `#join @t 2` gets the last 2 data messages and the `#presence`
/// messages between them, which do not count; the member set by the client rule is the
/// host's after the replay, whatever the replay held.
#[test]
fn presence_messages_in_a_replay_are_not_counted() {
    let hub = hub_with(presence).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut keeper = Client::connect(&hub, &mut events, "keeper");
    let mut keeper_view = joined_view(&mut keeper, "both");
    hub.publish("both", "m1").expect("publish");
    read_until_data(&mut keeper, &mut keeper_view, "m1");
    let mut xena = Client::connect(&hub, &mut events, "user:xena");
    xena.join("both");
    hub.publish("both", "m2").expect("publish");
    xena.leave("both");
    hub.publish("both", "m3").expect("publish");
    read_until_data(&mut keeper, &mut keeper_view, "m3");
    let seq_of = |payload: &str| {
        keeper_view
            .data
            .iter()
            .find(|(_, p)| p == payload)
            .map(|(seq, _)| *seq)
            .expect("seen by the keeper")
    };
    let (m2, m3) = (seq_of("m2"), seq_of("m3"));
    assert_eq!(m3, m2 + 2, "the leave between: {:?}", keeper_view.lines);

    let mut joiner = Client::connect(&hub, &mut events, "joiner");
    let (mut view, at, replay) = join_with(&mut joiner, "both", "#join @both 2");
    assert_eq!(replay, Some((m2, at)), "{:?}", view.lines);
    hub.publish("both", "live").expect("publish");
    read_until_data(&mut joiner, &mut view, "live");
    let data: Vec<&str> = view.data.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(data, ["m2", "m3", "live"], "{:#?}", view.lines);
    let replayed = numbered_lines(&view, 0);
    assert!(
        replayed
            .iter()
            .any(|l| *l == &format!("#presence @both {} leave u:xena", m2 + 1)),
        "{replayed:#?}"
    );
    assert_eq!(view.names(), &host_view(&hub, "both"));
    assert_eq!(
        view.names(),
        &BTreeSet::from([anon(keeper.id), anon(joiner.id)])
    );
}

// --------------------------------------------------------------------------- the limit

/// `presence_limit(3)`: the 4th entry makes members get `count 4` instead of its name, a
/// snapshot then gives the count only, and back at 2 (3/4 of the limit, rounded down)
/// members get the whole list again; a member's set by the client rule follows.
#[test]
fn over_the_limit_members_get_counts_then_the_whole_list() {
    // Counts only at the crossings here (the periodic ones: the next test).
    let hub = hub_with(|_| {
        TopicOptions::new()
            .presence(true)
            .presence_limit(3)
            .presence_counts(None)
    })
    .bind(LOCAL)
    .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut watcher = Client::connect(&hub, &mut events, "watcher");
    let mut view = joined_view(&mut watcher, ROOM);
    hub.publish(ROOM, "start").expect("publish");
    read_until_data(&mut watcher, &mut view, "start");
    let mut users: Vec<Client> = ["user:a", "user:b", "user:c"]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    for user in &mut users {
        user.join(ROOM);
    }
    hub.publish(ROOM, "four").expect("publish");
    let from = view.lines.len();
    read_until_data(&mut watcher, &mut view, "four");
    let told = changes(&view.lines[from..]);
    assert_eq!(
        told,
        ["join u:a", "join u:b", "count 4"],
        "{:#?}",
        view.lines
    );
    assert_eq!((view.names.as_ref(), view.count), (None, 4));

    // A fifth: nothing told; a newcomer's snapshot and `#who` give the count only.
    let mut fifth = Client::connect(&hub, &mut events, "user:d");
    fifth.say("#join @room");
    let members = fifth.until("#members @room ");
    assert!(members.ends_with(" count 5"), "{members}");
    watcher.say("#who @room");
    let who = watcher.until("#members @room ");
    assert!(who.ends_with(" count 5"), "{who}");
    view.take(&who);

    // Down to 4, then 3: nothing told; at 2, the whole list.
    fifth.close(&mut events);
    let c = users.pop().expect("c");
    c.close(&mut events);
    let b = users.pop().expect("b");
    b.close(&mut events);
    hub.publish(ROOM, "two").expect("publish");
    let from = view.lines.len();
    read_until_data(&mut watcher, &mut view, "two");
    let told = changes(&view.lines[from..]);
    assert_eq!(told.len(), 1, "{:#?}", view.lines);
    let mut words: Vec<&str> = told[0].split(' ').collect();
    words[2..].sort_unstable();
    let want = [anon(watcher.id), "u:a".to_owned()];
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(words[..2], ["all", "2"], "{told:?}");
    assert_eq!(words[2..], want[..], "{told:?}");
    assert_eq!(view.names(), &host_view(&hub, ROOM));
}

/// While names are withheld, a changed count is told again, once per period however many
/// come and go, and never as names.
#[test]
fn while_names_are_withheld_the_count_is_told_as_it_changes() {
    let hub = hub_with(|_| {
        TopicOptions::new()
            .presence(true)
            .presence_limit(1)
            .presence_counts(Some(std::time::Duration::from_millis(100)))
    })
    .bind(LOCAL)
    .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut watcher = Client::connect(&hub, &mut events, "watcher");
    let mut view = joined_view(&mut watcher, ROOM);
    let mut users: Vec<Client> = ["user:a", "user:b", "user:c"]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    for user in &mut users {
        user.join(ROOM);
    }
    // `count 2` as the second entry came; then counts, at most one a period, up to 4.
    let mut told = Vec::new();
    while told.last().map(String::as_str) != Some("count 4") {
        let line = watcher.until("#presence @room ");
        view.take(&line);
        let change: Vec<&str> = line.splitn(4, ' ').collect();
        told.push(change[3].to_owned());
    }
    assert_eq!(told[0], "count 2", "{told:?}");
    assert!(
        told.iter().all(|t| t.starts_with("count ")) && told.len() <= 3,
        "{told:?}"
    );
    assert_eq!((view.names.as_ref(), view.count), (None, 4));
    watcher.say("#who @room");
    assert!(watcher.until("#members @room ").ends_with(" count 4"));
}

impl Client {
    /// Closes the connection and waits for the hub to see it go.
    fn close(self, events: &mut EventLog) {
        let id = self.id;
        drop(self);
        events.disconnected(id);
    }
}

// ------------------------------------------------------------------------------- #who

/// `#who`: a member gets the members at the topic's position; a client not in the topic
/// is refused `member`; a bad name `name`.
#[test]
fn who_answers_members_only_and_only_with_presence() {
    let hub = hub_with(|topic| TopicOptions::new().presence(topic == ROOM))
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut alice = Client::connect(&hub, &mut events, "user:alice");
    let mut view = joined_view(&mut alice, ROOM);
    hub.publish(ROOM, "one").expect("publish");
    read_until_data(&mut alice, &mut view, "one");
    let mut bob = Client::connect(&hub, &mut events, "anonymous");
    bob.join(ROOM);
    hub.publish(ROOM, "two").expect("publish");
    read_until_data(&mut alice, &mut view, "two");
    let (epoch, position) = {
        let joined = view.lines[0].split(' ').collect::<Vec<_>>();
        (joined[2].to_owned(), view.last)
    };

    alice.say("#who @room");
    let answer = alice.line();
    let mut fresh = View::new(ROOM);
    assert!(fresh.take(&answer), "{answer}");
    assert!(
        answer.starts_with(&format!("#members @room {epoch} {position} all 2 ")),
        "{answer}"
    );
    assert_eq!(fresh.names(), &host_view(&hub, ROOM));
    assert_eq!(fresh.names(), view.names());

    let mut carol = Client::connect(&hub, &mut events, "anonymous");
    carol.say("#who @room");
    assert_eq!(carol.line(), "#refused who @room member");
    carol.say("#who @nowhere");
    assert_eq!(carol.line(), "#refused who @nowhere member");
    carol.say(&format!("#who @{}", "x".repeat(65)));
    let refused = carol.line();
    assert!(
        refused.starts_with("#refused who @x") && refused.ends_with(" name"),
        "{refused}"
    );
}

/// `#who` of a topic without presence, by a member: `#refused who @t off`.
#[test]
fn who_of_a_topic_without_presence_is_refused_off() {
    let hub = hub_with(|_| TopicOptions::new()).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut carol = Client::connect(&hub, &mut events, "anonymous");
    carol.join("plain");
    carol.say("#who @plain");
    // Nothing else is sent to the topic: the next line is the answer.
    assert_eq!(carol.line(), "#refused who @plain off");
}

/// `all` lists are sorted as `docs/PROTOCOL.md` says: `c:` before `u:`, then by id (as a
/// number) or key.
#[test]
fn member_lists_are_sorted_as_documented() {
    let hub = hub_with(presence).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut clients: Vec<Client> = ["user:zed", "user:amy", "anonymous", "anonymous"]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    for client in &mut clients {
        client.join(ROOM);
    }
    // The last one in was told all four as it joined.
    let who = clients[3].until("#members @room ");
    let want = format!(
        "all 4 {} {} u:amy u:zed",
        anon(clients[2].id),
        anon(clients[3].id)
    );
    assert!(who.ends_with(&want), "{who}: expected {want}");
}

// -------------------------------------------------------------------------- host side

/// One of the presence events, as a short string, or `None` for other events. A client's
/// `Disconnected` is kept too, to check what comes before it.
fn presence_event(event: &Event) -> Option<String> {
    Some(match event {
        Event::MemberJoined {
            client,
            topic,
            user,
            ..
        } => format!("joined {client} {topic} {user:?}"),
        Event::MemberLeft {
            client,
            topic,
            user,
            ..
        } => format!("left {client} {topic} {user:?}"),
        Event::TopicOccupied { topic, .. } => format!("occupied {topic}"),
        Event::TopicEmptied { topic, .. } => format!("emptied {topic}"),
        Event::Disconnected { client, .. } => format!("disconnected {client}"),
        _ => return None,
    })
}

/// Joins by `#join`, by `Hub::join`, by admission and by a resume, a `#leave`, and
/// disconnects: with `presence_events`, the events in the order the hub applied them;
/// without, none.
fn membership_story(knob: bool) -> Vec<String> {
    let hub = hub_with(|_| TopicOptions::new())
        .presence_events(knob)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut anne = Client::connect(&hub, &mut events, "anonymous");
    let mut bob = Client::connect(&hub, &mut events, "user:bob");
    anne.say("#join @ev");
    let joined = anne.until("#joined @ev ");
    let epoch = joined.split(' ').nth(2).expect("epoch").to_owned();
    hub.join(bob.id, "ev").expect("join");
    bob.until("#joined @ev ");
    let mut carl = Client::connect(&hub, &mut events, "in:ev");
    carl.until("#joined @ev ");
    anne.leave("ev");
    // Back by a resume, which joins her again.
    anne.say(&format!("#resume @ev {epoch} 0"));
    anne.until("#resumed @ev ");
    let (anne_id, bob_id, carl_id) = (anne.id, bob.id, carl.id);
    for (client, id) in [(carl, carl_id), (bob, bob_id)] {
        drop(client);
        events.disconnected(id);
    }
    drop(anne);
    events.disconnected(anne_id);
    events
        .seen
        .iter()
        .filter_map(presence_event)
        .map(|e| {
            e.replace(&anne_id.to_string(), "anne")
                .replace(&bob_id.to_string(), "bob")
                .replace(&carl_id.to_string(), "carl")
        })
        .collect()
}

#[test]
fn presence_events_come_in_the_order_of_the_changes() {
    assert_eq!(
        membership_story(true),
        [
            "occupied ev",
            "joined anne ev None",
            "joined bob ev Some(\"bob\")",
            "joined carl ev None",
            "left anne ev None",
            "joined anne ev None",
            "left carl ev None",
            "disconnected carl",
            "left bob ev Some(\"bob\")",
            "disconnected bob",
            "left anne ev None",
            "emptied ev",
            "disconnected anne",
        ]
    );
    assert_eq!(
        membership_story(false),
        ["disconnected carl", "disconnected bob", "disconnected anne"]
    );
}

/// `Hub::members` lists every connection, sorted by id, with its user; `member_count`
/// counts connections, not entries; an unknown topic has none.
#[test]
fn the_host_sees_every_connection_of_a_topic() {
    let hub = hub_with(presence).bind(LOCAL).expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut clients: Vec<Client> = ["anonymous", "user:bob", "user:bob"]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    // Joined in reverse order: listed by id all the same.
    for client in clients.iter_mut().rev() {
        client.join("mc");
    }
    let members: Vec<(ClientId, Option<String>)> = hub
        .members("mc")
        .into_iter()
        .map(|m| (m.client, m.user))
        .collect();
    let bob = Some("bob".to_owned());
    assert_eq!(
        members,
        [
            (clients[0].id, None),
            (clients[1].id, bob.clone()),
            (clients[2].id, bob)
        ]
    );
    assert_eq!(hub.member_count("mc"), 3);
    assert_eq!(host_view(&hub, "mc").len(), 2);
    assert!(hub.members("nowhere").is_empty());
    assert_eq!(hub.member_count("nowhere"), 0);
    clients[0].leave("mc");
    assert_eq!(hub.member_count("mc"), 2);
}

/// A `topic_options` closure that panics (in each way a panic can be hard to drop) gives
/// that topic the defaults, counted; other topics get theirs, and the hub goes on.
#[test]
fn a_panicking_topic_options_gives_the_defaults() {
    let hub = hub_with(|topic| match topic.strip_prefix("boom-") {
        Some(how) => panic_as(how),
        None => TopicOptions::new().presence(true),
    })
    .bind(LOCAL)
    .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut client = Client::connect(&hub, &mut events, "anonymous");
    for how in PANICS {
        let topic = format!("boom-{how}");
        client.say(&format!("#join @{topic}"));
        assert!(client.line().starts_with(&format!("#joined @{topic} ")));
        // The defaults: no presence, so no #members; the next line is the host's.
        hub.publish(&topic, "after").expect("publish");
        assert_eq!(client.line(), format!("1@{topic} after"));
    }
    let stats = stats_when(&hub, |s| s.callback_panics == PANICS.len() as u64);
    assert_eq!(stats.callback_panics, PANICS.len() as u64, "{stats:#?}");
    client.say("#join @fine");
    assert!(client.line().starts_with("#joined @fine "));
    let members = client.line();
    assert!(
        members.starts_with("#members @fine ")
            && members.ends_with(&format!(" all 1 {}", anon(client.id))),
        "{members}"
    );
}

// ------------------------------------------------------------------ the Python client

/// What the presence tests ask of the Python client beyond `util::Driver`.
trait Presence {
    fn view(&mut self, topic: &str) -> (u64, String);
}

impl Presence for Driver {
    /// The client's member set of `topic`, as `view` prints it: (position, `all <n>
    /// <sorted>...` or `count <n>`).
    fn view(&mut self, topic: &str) -> (u64, String) {
        let lines = self.run(&format!("view {topic}"));
        let rest = lines[0]
            .strip_prefix(&format!("view @{topic} "))
            .unwrap_or_else(|| panic!("{lines:?}"));
        let (at, set) = rest.split_once(' ').expect("a position and a set");
        (at.parse().expect("a position"), set.to_owned())
    }
}

/// `all <n> <sorted entries>`, as the driver prints a member set.
fn listed(set: &BTreeSet<String>) -> String {
    let mut words = vec!["all".to_owned(), set.len().to_string()];
    words.extend(set.iter().cloned());
    words.join(" ")
}

/// The Python client keeps a presence topic's members by the client rule: after its join,
/// as others come and go, across a dropped connection while others change the room, and
/// over the limit; `who` answers as the set says; a join with history gets the last
/// messages before the live ones.
#[test]
fn the_python_client_keeps_the_member_set() {
    if !require_program("python3") {
        return;
    }
    let hub = hub_with(|topic| match topic {
        "news" => TopicOptions::new().history(2),
        _ => TopicOptions::new().presence(true).presence_limit(4),
    })
    .bind(LOCAL)
    .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let mut py = Driver::start(&hub, &["--auth", "user:py thon"]);
    py.run("connect");
    let lines = py.run("join room");
    assert!(lines[0].starts_with("joined @room "), "{lines:?}");
    py.run("until-event members @room");
    assert_eq!(py.view(ROOM).1, "all 1 u:py\\u{20}thon");

    let mut ann = Client::connect(&hub, &mut events, "user:ann");
    ann.join(ROOM);
    let mut anon_client = Client::connect(&hub, &mut events, "anonymous");
    anon_client.join(ROOM);
    hub.publish(ROOM, "two more").expect("publish");
    let lines = py.run("until-event message @room");
    let presence: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("presence "))
        .collect();
    assert_eq!(presence.len(), 2, "{lines:#?}");
    assert!(presence[0].ends_with(" join u:ann"), "{presence:?}");
    let host = host_view(&hub, ROOM);
    assert_eq!(py.view(ROOM).1, listed(&host));
    let who = py.run("who room");
    assert!(
        who[0].starts_with("members @room ") && who[0].ends_with(&listed(&host)),
        "{who:?}"
    );

    // Dropped: ann leaves and two others come while the client is away; it resumes.
    py.run("drop");
    let ann_id = ann.id;
    drop(ann);
    events.disconnected(ann_id);
    let mut more: Vec<Client> = ["user:bo", "anonymous"]
        .iter()
        .map(|token| Client::connect(&hub, &mut events, token))
        .collect();
    for client in &mut more {
        client.join(ROOM);
    }
    py.run("connect");
    hub.publish(ROOM, "back").expect("publish");
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.ends_with(" back")) {
        lines.extend(py.run("until-event message @room"));
    }
    assert!(
        lines.iter().any(|l| l.starts_with("resumed @room ")),
        "{lines:#?}"
    );
    let host = host_view(&hub, ROOM);
    assert_eq!(host.len(), 4, "{host:?}");
    assert_eq!(py.view(ROOM).1, listed(&host), "{lines:#?}");

    // A fifth entry: over the limit of 4, counts only; back to 3, the whole list.
    let mut fifth = Client::connect(&hub, &mut events, "user:zed");
    fifth.join(ROOM);
    hub.publish(ROOM, "five").expect("publish");
    py.run("until-event message @room");
    assert_eq!(py.view(ROOM).1, "count 5");
    fifth.close(&mut events);
    more.pop().expect("one").close(&mut events);
    hub.publish(ROOM, "three").expect("publish");
    py.run("until-event message @room");
    let host = host_view(&hub, ROOM);
    assert_eq!(py.view(ROOM).1, listed(&host));

    // History: the last 2 of news, then the live one.
    let _keeper = kept(&hub, &mut events, "news", 5);
    let lines = py.run("join news");
    assert!(lines[0].starts_with("joined @news "), "{lines:?}");
    hub.publish("news", "live").expect("publish");
    let lines = py.run("until @news 6");
    let got: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("message @news "))
        .collect();
    assert_eq!(got, ["4 m4", "5 m5", "6 live"], "{lines:#?}");
    py.run("quit");
}

/// The names `topic_options` was asked about, in order, by a hub of `builder`.
fn asking(builder: HubBuilder) -> (Hub, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&asked);
    let hub = builder
        .topic_options(move |topic| {
            log.lock().expect("the log").push(topic.to_owned());
            TopicOptions::new().presence(true)
        })
        .bind(LOCAL)
        .expect("bind");
    (hub, asked)
}

/// `topic_options` is asked once per life of a topic: not again for a second member, nor
/// for a topic kept after its last member left (`Protocol::Sequenced` keeps it, with its
/// numbers, for members to come back); again once it was evicted (here by `max_topics`,
/// for a new topic) and is made anew.
#[test]
fn topic_options_is_asked_once_per_life_of_a_topic() {
    let (hub, asked) = asking(rooms().authenticate(by_token).max_topics(1));
    let mut events = EventLog::subscribe(&hub);
    let mut a = Client::connect(&hub, &mut events, "anonymous");
    let mut b = Client::connect(&hub, &mut events, "anonymous");
    // Each waits for its answer: the closure runs before the hub answers a join.
    a.join("life");
    b.join("life");
    a.leave("life");
    b.leave("life");
    a.join("life");
    a.leave("life");
    a.join("other");
    a.leave("other");
    b.join("life");
    let asked = asked.lock().expect("the log").clone();
    assert_eq!(asked, ["life", "other", "life"]);
}

/// Without the protocol, presence and history cannot be told: `topic_options` is a
/// configuration error at `bind`, not options silently ignored.
#[test]
fn topic_options_without_the_protocol_is_a_config_error() {
    match Hub::builder().topic_options(presence).bind(LOCAL) {
        Err(hubcast::Error::Config(msg)) => assert!(msg.contains("topic_options"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// Without `Protocol::Sequenced`, the host's side works all the same: `Hub::members` and
/// the events; clients get only what is published.
#[test]
fn without_the_protocol_the_host_sees_members() {
    let hub = Hub::builder()
        .presence_events(true)
        .bind(LOCAL)
        .expect("bind");
    let mut events = EventLog::subscribe(&hub);
    let (mut first, first_id) = join(&hub, &mut events);
    let (mut second, second_id) = join(&hub, &mut events);
    hub.join(first_id, ROOM).expect("join");
    hub.join(second_id, ROOM).expect("join");
    hub.publish(ROOM, "hello").expect("publish");
    assert_eq!(first.read_line(), b"hello");
    assert_eq!(second.read_line(), b"hello");
    let ids: Vec<ClientId> = hub.members(ROOM).iter().map(|m| m.client).collect();
    assert_eq!(ids, [first_id, second_id]);
    let joined: Vec<ClientId> = (0..2)
        .map(|_| {
            events.wait_for("a member", |e| match e {
                Event::MemberJoined { client, .. } => Some(*client),
                _ => None,
            })
        })
        .collect();
    assert_eq!(joined, [first_id, second_id]);
}
