//! The `#` control grammar: arbitrary text after a client's `#` must never panic, a
//! request must read back as written, and a refusal must be one bounded `#error` line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    hubcast::fuzzing::control(bytes);
});
