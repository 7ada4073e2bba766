//! Google error answers: the REST error envelope of every API call the connector makes
//! (mapped to a verdict as `Session::get` does) and the token endpoint's error body (mapped
//! for each grant). Input: one selector byte, two status bytes, then the body.
#![no_main]

use datacap_google::fuzz;
use datacap_google::errors::{Api, Grant};
use libfuzzer_sys::fuzz_target;

mod error_input;

const APIS: [Api; 6] = [
    Api::GmailProfile,
    Api::GmailMessagesList,
    Api::GmailMessageGet,
    Api::GmailHistory,
    Api::CalendarEvents,
    Api::DirectoryUsers,
];
const GRANTS: [Grant; 3] = [Grant::Delegation, Grant::Refresh, Grant::Code];
/// The statuses the providers answer with, so the fuzzer need not guess them.
const STATUSES: [u16; 10] = [400, 401, 403, 404, 409, 410, 429, 500, 502, 503];

fuzz_target!(|data: &[u8]| {
    let Some((selector, status, body)) = error_input::split(data, &STATUSES) else {
        return;
    };
    let selector = usize::from(selector);
    if selector < 128 {
        fuzz::api_error(APIS[selector % APIS.len()], status, body);
    } else {
        fuzz::token_error(GRANTS[selector % GRANTS.len()], status, body);
    }
});
