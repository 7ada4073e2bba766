//! The end-to-end suite: the real `datacap` binary (cargo builds it for this test target,
//! `CARGO_BIN_EXE_datacap`) against the provider sim on loopback, a SQLite file or a fresh
//! PostgreSQL database, and, for the pages, a real browser. One test binary, one module per
//! topic; [`harness`] holds what they share. A new end-to-end test goes into the topic's
//! module (or a new module declared here); repository checks that run no daemon live in
//! `tests/repo/` instead.

mod harness;

mod api_contract;
mod browser;
mod browser_signin;
mod classify;
mod crash;
mod faults;
mod operate;
mod store_commands;
mod systemd;
mod web;
mod webhooks;
mod worker;
