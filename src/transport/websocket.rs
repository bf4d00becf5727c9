//! WebSocket clients (RFC 6455), sans I/O: the frames over byte buffers only, for the
//! dispatcher to drive. No socket, thread or clock here, so all of it is unit-tested;
//! tungstenite supplies the frame headers.
//!
//! ```text
//! client bytes ──► Decoder::decode ──► Inbound: Message / Ping / Pong / Close / Fragment
//! broadcasts   ──► encode_into (unmasked, final frames; close_payload for Close)
//! ```

// Until the dispatcher drives WebSocket clients, only the tests and the fuzz entry use this.
#![allow(dead_code, unused_imports)]

mod frame;

pub(crate) use frame::{
    close_payload, encode_into, encoded_len, Decoder, Inbound, Opcode, WsError,
};
