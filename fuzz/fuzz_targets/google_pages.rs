//! Google success answers: a Gmail `messages.list` page, a `history.list` page, a
//! `messages.get` answer turned into an item, and a Calendar `events.list` page turned into
//! items. Input: one selector byte, then the body.
#![no_main]

use datacap_google::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, body @ ..] = data else {
        return;
    };
    match selector % 4 {
        0 => fuzz::message_list(body),
        1 => fuzz::history_page(body),
        2 => fuzz::message(body),
        _ => fuzz::events_page(body),
    }
});
