//! Hubs that speak the numbered-stream protocol (`Protocol::Sequenced`), as the `rooms`
//! example does, and the first line their clients read.

use hubcast::Hub;

use super::Peer;

/// A hub that speaks the numbered-stream protocol (`Protocol::Sequenced`).
pub(crate) fn sequenced() -> hubcast::HubBuilder {
    Hub::builder().protocol(hubcast::Protocol::Sequenced)
}

/// A hub like the `rooms` example: any client may join any room, and what it says goes to
/// the other members of its rooms.
pub(crate) fn rooms() -> hubcast::HubBuilder {
    sequenced()
        .relay(hubcast::Relay::Topics)
        .client_topics(|_| true)
}

/// Reads the `#at * <epoch> <seq>` a client of [`sequenced`] hub gets first: (epoch, seq).
pub(crate) fn read_at(peer: &mut Peer) -> (u64, u64) {
    let line = peer.read_text_line();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(&words[..2], ["#at", "*"], "{line}");
    (words[2].parse().unwrap(), words[3].parse().unwrap())
}
