//! The dispatcher's I/O: its `mio` poll, its listeners, and the buffers every client's
//! reads share.

use mio::Poll;

use super::admission::Listener;

/// Size of the one read buffer all clients share.
const SCRATCH: usize = 64 * 1024;

/// The poll and what reads share.
pub(super) struct Io {
    pub(super) poll: Poll,
    /// Emptied when a shutdown begins.
    pub(super) listeners: Vec<Listener>,
    /// Where every client's bytes are read into.
    pub(super) scratch: Vec<u8>,
    /// Where an unfragmented WebSocket frame's payload is unmasked, for any client.
    #[cfg(feature = "websocket")]
    pub(super) unmasked: Vec<u8>,
}

impl Io {
    pub(super) fn new(poll: Poll, listeners: Vec<Listener>) -> Io {
        Io {
            poll,
            listeners,
            scratch: vec![0; SCRATCH],
            #[cfg(feature = "websocket")]
            unmasked: Vec::new(),
        }
    }
}
