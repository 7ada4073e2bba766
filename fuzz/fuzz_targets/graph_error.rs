//! Microsoft error answers: the Graph error envelope (with its nested inner errors) and the
//! Entra token endpoint's error body, each classified as the connector does, and the
//! access token whose claims it reads. Input: one selector byte, two status bytes, then the
//! body.
#![no_main]

use datacap_microsoft::fuzz;
use libfuzzer_sys::fuzz_target;

mod error_input;

/// The statuses Graph and Entra answer with, so the fuzzer need not guess them.
const STATUSES: [u16; 10] = [400, 401, 403, 404, 409, 410, 429, 500, 503, 504];

fuzz_target!(|data: &[u8]| {
    let Some((selector, status, body)) = error_input::split(data, &STATUSES) else {
        return;
    };
    match selector % 3 {
        0 => fuzz::graph_error(status, body),
        1 => fuzz::token_error(status, body),
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                fuzz::access_token(text);
            }
        }
    }
});
