//! Topics: a client gets exactly the messages of the topics it is in, in publish order,
//! interleaved with broadcasts in call order; joins and leaves are ordered like every other
//! call; limits hold.

mod util;

use std::collections::HashMap;

use hubcast::{Error, Hub};
use util::{join, EventLog, Peer, LOCAL};

fn joined(hub: &Hub, events: &mut EventLog, n: usize) -> Vec<(Peer, hubcast::ClientId)> {
    (0..n).map(|_| join(hub, events)).collect()
}

#[test]
fn a_client_gets_exactly_its_topics_messages() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let mut clients = joined(&hub, &mut events, 3);
    let ids: Vec<_> = clients.iter().map(|c| c.1).collect();
    hub.join(ids[0], "red").unwrap();
    hub.join(ids[1], "blue").unwrap();
    hub.join(ids[2], "red").unwrap();
    hub.join(ids[2], "blue").unwrap();
    hub.publish("red", "r1").unwrap();
    hub.publish("blue", "b1").unwrap();
    hub.broadcast("all").unwrap();
    hub.publish("green", "nobody").unwrap();
    hub.publish_except("red", ids[2], "r2").unwrap();
    hub.publish("blue", "b2").unwrap();
    let want: [&[&[u8]]; 3] = [
        &[b"r1", b"all", b"r2"],
        &[b"b1", b"all", b"b2"],
        &[b"r1", b"b1", b"all", b"b2"],
    ];
    for ((peer, _), want) in clients.iter_mut().zip(want) {
        for line in want {
            assert_eq!(peer.read_line(), *line);
        }
    }
    // Nothing else is on its way.
    hub.broadcast("end").unwrap();
    for (peer, _) in &mut clients {
        assert_eq!(peer.read_line(), b"end");
    }
    let topics: HashMap<_, _> = hub
        .topics()
        .into_iter()
        .map(|t| (t.name, t.members))
        .collect();
    assert_eq!(
        topics,
        HashMap::from([("red".into(), 2), ("blue".into(), 2)])
    );
    assert_eq!(hub.client(ids[2]).unwrap().topics, vec!["blue", "red"]);
}

#[test]
fn joins_and_leaves_are_ordered_with_publishes() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (mut peer, id) = join(&hub, &mut events);
    hub.publish("room", "before the join").unwrap();
    hub.join(id, "room").unwrap();
    hub.publish("room", "after the join").unwrap();
    hub.leave(id, "room").unwrap();
    hub.publish("room", "after the leave").unwrap();
    hub.join(id, "room").unwrap();
    hub.publish("room", "back again").unwrap();
    hub.broadcast("end").unwrap();
    assert_eq!(peer.read_line(), b"after the join");
    assert_eq!(peer.read_line(), b"back again");
    assert_eq!(peer.read_line(), b"end");
}

#[test]
fn a_client_leaves_its_topics_when_it_leaves_the_hub() {
    let hub = Hub::bind(LOCAL).unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (peer, id) = join(&hub, &mut events);
    let (mut other, other_id) = join(&hub, &mut events);
    hub.join(id, "a").unwrap();
    hub.join(id, "b").unwrap();
    hub.join(other_id, "b").unwrap();
    drop(peer);
    events.disconnected(id);
    let topics: Vec<_> = hub
        .topics()
        .into_iter()
        .map(|t| (t.name, t.members))
        .collect();
    assert_eq!(topics, vec![("b".to_owned(), 1)], "an empty topic is freed");
    assert!(matches!(hub.join(id, "a"), Err(Error::UnknownClient(_))));
    hub.publish("b", "still here").unwrap();
    assert_eq!(other.read_line(), b"still here");
}

#[test]
fn names_and_limits_are_checked() {
    let hub = Hub::builder()
        .max_topics(2)
        .max_topics_per_client(2)
        .max_topic_len(5)
        .bind(LOCAL)
        .unwrap();
    let mut events = EventLog::subscribe(&hub);
    let (_a, a) = join(&hub, &mut events);
    let (_b, b) = join(&hub, &mut events);
    for bad in ["", "toolong", "a b", "a\nb"] {
        assert!(
            matches!(hub.join(a, bad), Err(Error::InvalidTopic(_))),
            "{bad:?}"
        );
        assert!(matches!(hub.publish(bad, "x"), Err(Error::InvalidTopic(_))));
    }
    hub.join(a, "one").unwrap();
    hub.join(a, "two").unwrap();
    assert!(matches!(hub.join(a, "three"), Err(Error::TopicLimit(_))));
    assert!(matches!(hub.join(b, "three"), Err(Error::TopicLimit(_))));
    hub.join(b, "one").unwrap();
    hub.leave(a, "two").unwrap();
    hub.join(b, "three").unwrap();
    // Leaving what one is not in changes nothing.
    hub.leave(a, "three").unwrap();
    hub.leave(a, "none").unwrap();
    assert_eq!(hub.client(a).unwrap().topics, vec!["one"]);
}

/// Several host threads publish to many topics and broadcast at once, while members join
/// and leave: each client gets, per publisher thread, that thread's messages for its
/// topics in order, and nothing for topics it was not in.
#[test]
fn many_topics_from_several_threads_keep_each_publishers_order() {
    const TOPICS: usize = 50;
    const PER_THREAD: usize = 2_000;
    let hub = std::sync::Arc::new(Hub::bind(LOCAL).unwrap());
    let mut events = EventLog::subscribe(&hub);
    let mut clients = joined(&hub, &mut events, 10);
    // Client k is in topics k, k+10, k+20, …
    for (k, (_, id)) in clients.iter().enumerate() {
        for t in (k..TOPICS).step_by(10) {
            hub.join(*id, &format!("t{t}")).unwrap();
        }
    }
    drop(events);
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let hub = std::sync::Arc::clone(&hub);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let t = (i * 7 + p) % TOPICS;
                    hub.publish(&format!("t{t}"), format!("{p} {i} t{t}"))
                        .unwrap();
                }
                hub.broadcast(format!("{p} done")).unwrap();
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for (k, (peer, _)) in clients.iter_mut().enumerate() {
        let mut last = [None::<usize>; 2];
        let mut done = 0;
        while done < 2 {
            let line = String::from_utf8(peer.read_line()).unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            let p: usize = words[0].parse().unwrap();
            if words[1] == "done" {
                done += 1;
                continue;
            }
            let i: usize = words[1].parse().unwrap();
            let t: usize = words[2][1..].parse().unwrap();
            assert_eq!(t % 10, k, "client {k} got topic {t}");
            assert!(last[p].map_or(true, |l| i > l), "out of order from {p}");
            last[p] = Some(i);
        }
    }
}

/// Presence and history are told through the protocol: asking for them without it is a
/// configuration error, not options silently ignored.
#[test]
fn topic_options_need_the_protocol() {
    let err = Hub::builder()
        .topic_options(|_| hubcast::TopicOptions::new().presence(true))
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(why) if why.contains("Protocol::Sequenced")),
        "{err}"
    );
}
