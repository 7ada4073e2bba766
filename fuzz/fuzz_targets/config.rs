//! The daemon's configuration: the binary's own `crates/cli/src/config.rs` (with the
//! `[web]` and `[smtp]` sections' `web.rs` and `smtp.rs` it validates through), compiled in as
//! they are, parsing a config file with `DATACAP_<SECTION>__<KEY>` overrides on top. Input: the
//! file's text, then optionally 0xFF and `NAME=VALUE` lines for the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, clippy::all)]
#[path = "../../crates/cli/src/config.rs"]
mod config;
#[allow(dead_code, clippy::all)]
#[path = "../../crates/cli/src/smtp.rs"]
mod smtp;
#[allow(dead_code, clippy::all)]
#[path = "../../crates/cli/src/web.rs"]
mod web;

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|byte| *byte == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(text), Ok(env)) = (std::str::from_utf8(text), std::str::from_utf8(env)) else {
        return;
    };
    let env = env.lines().filter_map(|line| {
        let (name, value) = line.split_once('=')?;
        Some((name.to_owned(), value.to_owned()))
    });
    let _ = config::parse(text, "fuzz.toml", env);
});
