//! The inbound decoder with `Framing::Lines`: arbitrary bytes, cut into arbitrary reads,
//! under an arbitrary `max_frame`, must never panic nor yield a frame over the limit.
#![no_main]

use hubcast::Framing;
use libfuzzer_sys::fuzz_target;

mod input;

fuzz_target!(|bytes: &[u8]| {
    if let Some(input) = input::split(bytes) {
        hubcast::fuzzing::decode(Framing::Lines, input.data, input.cuts, input.max_frame);
    }
});
