//! The daemon's configuration: the binary's own `crates/cli/src/config/` (with its `[web]`
//! and `[smtp]` sections), compiled in as it is (it uses nothing else of the binary),
//! parsing a config file with `DATACAP_<SECTION>__<KEY>` overrides on top. Input: the
//! file's text, then optionally 0xFF and `NAME=VALUE` lines for the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, clippy::all)]
#[path = "../../crates/cli/src/config/mod.rs"]
mod config;

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
