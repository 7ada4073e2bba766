//! Graph delta rounds for mail and calendar: the pages of one round fed in order to the
//! connector's sink (replays merged, `@removed` applied), then its items. Input: one
//! selector byte, then the pages separated by 0xFF (a byte JSON text never holds).
#![no_main]

use datacap_microsoft::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let pages: Vec<&[u8]> = rest.split(|byte| *byte == 0xFF).collect();
    if selector % 2 == 0 {
        fuzz::mail_delta(&pages);
    } else {
        fuzz::calendar_delta(&pages);
    }
});
