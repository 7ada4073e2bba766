//! The worker's integration tests, one binary: the retention pass, and webhook delivery
//! to a real HTTP receiver on loopback, on a real SQLite file and a real PostgreSQL
//! database.

mod retention;
mod support;
mod webhooks;
