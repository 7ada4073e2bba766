//! The daemon's retention pass on a real SQLite file: old attempts go, each channel keeps
//! what its status depends on, old webhook events go once no delivery waits for them, and
//! retention switched off deletes nothing.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use datacap_connector::{Auth, Registry};
use datacap_core::Outcome;
use datacap_store::{AttemptRecord, Store, StoreOptions, WriteOptions, parse_tenants};
use datacap_worker::{
    CompanyCredentials, CredentialError, CredentialResolver, Worker, WorkerConfig,
};
use time::{Duration, OffsetDateTime};

use crate::support;

const TENANTS: &str = include_str!("../../../../tests/fixtures/worker/retention-tenants.toml");

/// Never asked: the retention pass polls nobody.
struct NoCredentials;

impl CredentialResolver for NoCredentials {
    fn resolve(&self, company: &CompanyCredentials<'_>) -> Result<Auth, CredentialError> {
        Err(CredentialError {
            company_id: company.company_id.to_owned(),
            detail: "no credentials in this test".to_owned(),
        })
    }
}

/// A successful attempt at `at` that leaves a cursor.
fn attempt(at: OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        next_cursor: Some(format!("cursor-{at}")),
        ..support::attempt(Outcome::Success, at)
    }
}

async fn worker(store: &Store, attempts_max_age: Option<StdDuration>) -> Worker {
    let config = WorkerConfig {
        attempts_max_age,
        ..WorkerConfig::default()
    };
    Worker::new(
        store.clone(),
        Registry::new(),
        Arc::new(NoCredentials),
        None,
        config,
    )
    .expect("worker")
}

async fn count(file: &std::path::Path) -> i64 {
    query(file, "SELECT COUNT(*) FROM import_attempts").await
}

/// One number from the file, read (or written) over a connection of its own.
async fn query(file: &std::path::Path, sql: &'static str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open the file");
    let count = if sql.starts_with("SELECT") {
        sqlx::query_as::<_, (i64,)>(sql)
            .fetch_one(&pool)
            .await
            .expect(sql)
            .0
    } else {
        i64::try_from(
            sqlx::query(sql)
                .execute(&pool)
                .await
                .expect(sql)
                .rows_affected(),
        )
        .expect("rows")
    };
    pool.close().await;
    count
}

#[tokio::test]
async fn the_retention_pass_prunes_what_is_older_than_the_configured_age() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("datacap.sqlite");
    let store = Store::connect(&file.display().to_string(), StoreOptions::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let now = OffsetDateTime::now_utc();
    store
        .apply_tenants(&parse_tenants(TENANTS).expect("tenants"), now)
        .await
        .expect("apply");
    // Six attempts 40 days old, and one from a minute ago.
    for day in 0..6 {
        let at = now - Duration::days(40) + Duration::minutes(day);
        store
            .record_attempt(&attempt(at), at, &WriteOptions::default())
            .await
            .expect("old attempt");
    }
    let recent = now - Duration::minutes(1);
    store
        .record_attempt(&attempt(recent), recent, &WriteOptions::default())
        .await
        .expect("recent attempt");
    assert_eq!(count(&file).await, 7);

    // Off: nothing goes.
    assert_eq!(worker(&store, None).await.retention_pass().await, None);
    assert_eq!(count(&file).await, 7);

    // 30 days: the channel keeps its latest three (the default red_after_consecutive_failures).
    let thirty_days = Some(StdDuration::from_secs(30 * 86_400));
    assert_eq!(
        worker(&store, thirty_days).await.retention_pass().await,
        Some(4)
    );
    assert_eq!(count(&file).await, 3);
    assert_eq!(
        worker(&store, thirty_days).await.retention_pass().await,
        Some(0)
    );

    // The old attempts changed Ana's icons 40 days ago: those events are still pending for
    // the endpoint (nobody delivered them), so the passes above kept every one of them.
    // (The recent attempt changed nothing, so every event is 40 days old.)
    let old_events = "SELECT COUNT(*) FROM webhook_events";
    let kept = query(&file, old_events).await;
    assert!(kept > 0, "the old attempts queued status-change events");
    assert_eq!(
        query(
            &file,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'"
        )
        .await,
        query(&file, "SELECT COUNT(*) FROM webhook_deliveries").await,
    );
    // Once each is settled (here: delivered), the next pass deletes them with their
    // deliveries; retention off still deletes nothing.
    assert!(query(&file, "UPDATE webhook_deliveries SET state = 'delivered'").await > 0);
    assert_eq!(worker(&store, None).await.retention_pass().await, None);
    assert_eq!(query(&file, old_events).await, kept);
    worker(&store, thirty_days).await.retention_pass().await;
    assert_eq!(query(&file, old_events).await, 0);
    assert_eq!(
        query(&file, "SELECT COUNT(*) FROM webhook_deliveries").await,
        query(
            &file,
            "SELECT COUNT(*) FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq"
        )
        .await,
        "no delivery is left without its event"
    );
}
