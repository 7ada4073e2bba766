//! Attempts written per second: each a full atomic attempt write (attempt row, two email
//! items, sync-state update, the member's status recomputation and history, the company's
//! banners), on SQLite and PostgreSQL, one attempt per transaction and 100 per transaction.
//!
//! The database holds several companies of thousands of members each (`COMPANIES` ×
//! `MEMBERS_PER_COMPANY`); attempts go to members picked at random across all of them, so
//! a batch spans companies and statuses and banners really change, as in the worker.
//!
//! Not a test: run with `cargo bench -p datacap-store --bench attempts`. PostgreSQL comes
//! from `DATACAP_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! a throwaway database is created and dropped. `RUST_LOG=sqlx::query=debug` prints every
//! statement with its duration.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use datacap_core::{Channel, EmailItem, Outcome};
use datacap_store::{AttemptRecord, Store, StoreOptions, WriteOptions, parse_tenants};
use sqlx::Connection;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[path = "../tests/support/postgres.rs"]
mod postgres;

const COMPANIES: usize = 5;
const MEMBERS_PER_COMPANY: usize = 2_000;
const MEMBERS: usize = COMPANIES * MEMBERS_PER_COMPANY;
/// Attempts written per batch size: fewer one by one (each is a whole transaction).
const ATTEMPTS: [(usize, usize); 2] = [(1, 2_000), (100, 20_000)];
const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

fn tenants() -> String {
    let mut text = String::new();
    for c in 0..COMPANIES {
        text.push_str(&format!(
            "[[companies]]\nid = \"bench{c}\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\nsettings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n",
        ));
        for m in 0..MEMBERS_PER_COMPANY {
            let i = c * MEMBERS_PER_COMPANY + m;
            text.push_str(&format!(
                "[[companies.members]]\nid = \"m{i}\"\nemail = \"m{i}@bench{c}.test\"\n"
            ));
        }
    }
    text
}

/// A member picked at random (a fixed-seed xorshift, so every run writes the same).
fn member_of(i: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % MEMBERS as u64) as usize
}

fn attempt(i: usize) -> AttemptRecord {
    let at = NOW + Duration::milliseconds(i as i64);
    // Mostly successes with a run of transient failures now and then, so statuses and
    // history really change.
    let outcome = if i % 17 < 3 {
        Outcome::ProviderError
    } else {
        Outcome::Success
    };
    AttemptRecord {
        attempt_id: Uuid::now_v7(),
        member_id: format!("m{}", member_of(i)),
        channel: if i.is_multiple_of(2) {
            Channel::Email
        } else {
            Channel::Calendar
        },
        started_at: at,
        finished_at: at,
        outcome,
        http_status: Some(200),
        provider_error_code: None,
        provider_error_message: None,
        provider_request_id: Some(format!("req-{i}")),
        email_items: if i.is_multiple_of(2) {
            (0..2)
                .map(|n| EmailItem {
                    provider_id: format!("msg-{i}-{n}"),
                    subject: Some("status".to_owned()),
                    participants: vec!["a@bench.test".to_owned()],
                    sent_at: Some(at),
                    ..EmailItem::default()
                })
                .collect()
        } else {
            Vec::new()
        },
        calendar_items: Vec::new(),
        next_cursor: Some(format!("cursor-{i}")),
        next_due_at: at + Duration::minutes(5),
        lease_owner: None,
    }
}

async fn run(label: &str, url: &str) {
    for (batch, count) in ATTEMPTS {
        let store = Store::connect(url, StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
            .apply_tenants(&parse_tenants(&tenants()).expect("tenants"), NOW)
            .await
            .expect("apply");
        let attempts: Vec<_> = (0..count).map(attempt).collect();
        let now = NOW + Duration::seconds(10);
        let started = Instant::now();
        for chunk in attempts.chunks(batch) {
            store
                .record_attempts(chunk, now, &WriteOptions::default())
                .await
                .expect("record");
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{label:<10} batch {batch:>3}: {count} attempts in {seconds:.2} s = {:.0} attempts/s ({:.0} µs/attempt; {MEMBERS} members in {COMPANIES} companies)",
            count as f64 / seconds,
            seconds * 1e6 / count as f64
        );
        store.close().await;
        reset(label, url).await;
    }
}

/// Empties the database between runs so each starts from the same state.
async fn reset(label: &str, url: &str) {
    if label == "sqlite" {
        let path = url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        for statement in ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] {
            sqlx::query(statement)
                .execute(&mut connection)
                .await
                .expect("reset schema");
        }
    }
}

#[tokio::main]
async fn main() {
    // `RUST_LOG=sqlx::query=debug` shows every statement with its time.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
    run("sqlite", &sqlite).await;

    let (name, url) = postgres::create_database("datacap_bench").await;
    run("postgresql", &url).await;
    postgres::drop_database(&name)
        .await
        .expect("drop bench database");
}
