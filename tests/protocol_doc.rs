//! What docs/PROTOCOL.md states, one test per statement, over lines as `nc` would see
//! them; and the race between a host's `Hub::join` on connect and the client's own
//! `#leave`, run a thousand times.

mod util;

use hubcast::{Event, Hub, HubBuilder, Protocol};
use util::{Peer, LOCAL, TIMEOUT};

fn sequenced() -> HubBuilder {
    Hub::builder().protocol(Protocol::Sequenced)
}

fn text(peer: &mut Peer) -> String {
    peer.read_text_line()
}

/// `#at * <epoch> <seq>` → (epoch, seq).
fn at(peer: &mut Peer) -> (u64, u64) {
    let line = text(peer);
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(&words[..2], ["#at", "*"], "{line}");
    (words[2].parse().unwrap(), words[3].parse().unwrap())
}

/// The race of the `rooms` example: the host puts every client in `lobby` on `Connected`
/// while the client sends `#leave @lobby` right after `#at`. The last decided wins: the
/// client's leave, read after the host's join was decided, keeps it out (even if the
/// join's command had not reached it: it is never told `#joined`), and the host gets
/// `Event::TopicLeft`; read before, it finds the client in no topic and changes nothing,
/// and the host's join puts it in. Every time, the host's table (`Hub::client`,
/// `Hub::topics`), the client's last `#joined`/`#left` and what it is sent agree.
#[test]
fn a_host_join_on_connect_and_the_clients_own_leave_agree_every_time() {
    const TRIES: usize = 1000;
    let hub = sequenced().client_topics(|_| true).bind(LOCAL).unwrap();
    let events = hub.subscribe();
    let addr = hub.local_addr();
    // Tries that ended out of lobby, and in it.
    let mut outcomes = [0usize; 2];
    for _ in 0..TRIES {
        let client = std::thread::spawn(move || {
            let mut peer = Peer::connect(addr);
            at(&mut peer);
            peer.write(b"#leave @lobby\n");
            // Until its own answer (the host's #joined may come first).
            let mut told = Vec::new();
            loop {
                let line = text(&mut peer);
                let done = line == "#left @lobby";
                told.push(line);
                if done {
                    return (peer, told);
                }
            }
        });
        let id = loop {
            if let Event::Connected { client, .. } = events.recv_timeout(TIMEOUT).unwrap() {
                break client;
            }
        };
        hub.join(id, "lobby").unwrap();
        let (mut peer, mut told) = client.join().unwrap();
        // Both are decided. The host's join, if it is applied, reaches the client before
        // the probe, and the probe before the end.
        let member = hub.client(id).unwrap().topics == ["lobby"];
        let members = hub
            .topics()
            .iter()
            .find(|t| t.name == "lobby")
            .map(|t| t.members);
        hub.publish("lobby", "probe").unwrap();
        hub.broadcast("end").unwrap();
        let mut probed = false;
        loop {
            let line = text(&mut peer);
            if line.ends_with(" end") {
                break;
            }
            probed |= line.ends_with("@lobby probe");
            if line.starts_with('#') {
                told.push(line);
            }
        }
        drop(peer);
        let mut left_itself = false;
        loop {
            match events.recv_timeout(TIMEOUT).unwrap() {
                Event::TopicLeft { client, topic, .. } if client == id && topic == "lobby" => {
                    left_itself = true;
                }
                Event::Disconnected { client, .. } if client == id => break,
                _ => {}
            }
        }
        let last = told
            .iter()
            .rev()
            .find(|l| l.starts_with("#joined @lobby ") || *l == "#left @lobby");
        let told_in = last.is_some_and(|l| l.starts_with("#joined"));
        assert_eq!(
            member, told_in,
            "the table and the client disagree: {told:?}"
        );
        assert_eq!(
            member, probed,
            "the table and the deliveries disagree: {told:?}"
        );
        assert_eq!(members.unwrap_or(0), usize::from(member), "{told:?}");
        // The documented outcome: out of lobby exactly when its own leave took it out
        // (the host was told); in it when the leave, read first, changed nothing.
        assert_eq!(member, !left_itself, "{told:?}");
        let expected: &[&[&str]] = if member {
            &[&["#left", "#joined"]]
        } else {
            &[&["#left"], &["#joined", "#left"]]
        };
        let kinds: Vec<&str> = told.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert!(expected.contains(&kinds.as_slice()), "{told:?}");
        outcomes[usize::from(member)] += 1;
    }
    eprintln!("out of lobby {}, in lobby {}", outcomes[0], outcomes[1]);
}
