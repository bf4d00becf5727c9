//! The WebSocket frame decoder: arbitrary client bytes, cut into arbitrary reads, under an
//! arbitrary `max_message`, must never panic, never yield a message over the limit or text
//! that is not UTF-8, and never hold memory between messages.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod input;

fuzz_target!(|bytes: &[u8]| {
    if let Some(input) = input::split(bytes) {
        hubcast::fuzzing::decode_websocket(input.data, input.cuts, input.max_frame);
    }
});
