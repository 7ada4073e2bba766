//! `datacap classify`'s input: `datacap_core::classify_json`, which parses the JSON request,
//! classifies every member and writes the JSON answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = datacap_core::classify_json(text);
    }
});
