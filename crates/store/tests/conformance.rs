//! The store's conformance suite: every test runs against a real SQLite file and a real
//! PostgreSQL database, each test on a fresh database of its own, so both backends are
//! held to the same behaviour and the tests run in parallel.
//!
//! PostgreSQL is found at `DATACAP_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it cannot be reached the
//! PostgreSQL half fails, it never skips.

use std::collections::HashSet;

use datacap_core::{Channel, Color, MemberConnection, Outcome, Reason};
use datacap_store::{
    AttemptRecord, CalendarItem, CryptoError, DeliveryNext, EmailItem, EncryptionKey, FailPoint,
    Job, SecretRef, Store, StoreError, StoreOptions, WebhookTry, WriteOptions, parse_tenants,
};
use secrecy::{ExposeSecret, SecretString};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

#[path = "support/attempt.rs"]
mod support;

#[path = "support/postgres.rs"]
mod test_postgres;

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test, dropped when the test ends.
struct TestDb {
    url: String,
    store: Store,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

/// Direct SQL access for assertions the store API does not answer (row counts, views).
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        let (url, dir, postgres_name) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("datacap.sqlite");
                (format!("sqlite://{}", path.display()), Some(dir), None)
            }
            Backend::Postgres => {
                let (name, url) = test_postgres::create_database("datacap_test").await;
                (url, None, Some(name))
            }
        };
        let store = Store::connect(&url, StoreOptions::default())
            .await
            .expect("connect store");
        store.migrate().await.expect("migrate");
        let raw = match backend {
            Backend::Sqlite => {
                Raw::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("raw sqlite"))
            }
            Backend::Postgres => {
                Raw::Postgres(sqlx::PgPool::connect(&url).await.expect("raw postgres"))
            }
        };
        TestDb {
            url,
            store,
            raw,
            _dir: dir,
            postgres_name,
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
        }
    }

    async fn execute(&self, sql: &'static str) {
        match &self.raw {
            Raw::Sqlite(pool) => {
                sqlx::query(sql).execute(pool).await.expect(sql);
            }
            Raw::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.expect(sql);
            }
        }
    }

    async fn strings(&self, sql: &'static str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .expect(sql)
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
                .collect(),
            Raw::Postgres(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .expect(sql)
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
                .collect(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _ = runtime.block_on(test_postgres::drop_database(&name));
        })
        .join();
    }
}

const TENANTS: &str = include_str!("../../../tests/fixtures/store/tenants.toml");

async fn applied(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    let tenants = parse_tenants(TENANTS).expect("good tenants file");
    db.store.apply_tenants(&tenants, NOW).await.expect("apply");
    db
}

/// [`support::attempt`] as these tests record it: started two seconds before `at`, a
/// `backendError` when it failed, a request id, and a cursor when it succeeded.
fn attempt(member: &str, channel: Channel, outcome: Outcome, at: OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        started_at: at - Duration::seconds(2),
        provider_error_code: (outcome != Outcome::Success).then(|| "backendError".to_owned()),
        provider_request_id: Some("req-1".to_owned()),
        next_cursor: (outcome == Outcome::Success).then(|| format!("cursor-{at}")),
        ..support::attempt(member, channel, outcome, at)
    }
}

fn icon<'a>(
    report: &'a datacap_store::StatusReport,
    member: &str,
) -> &'a datacap_store::MemberReport {
    report
        .companies
        .iter()
        .flat_map(|company| &company.members)
        .find(|candidate| candidate.id == member)
        .unwrap_or_else(|| panic!("member {member} in status"))
}

// ---------------------------------------------------------------------------------------
// apply

async fn apply_good_file_sets_up_companies_members_and_statuses(backend: Backend) {
    let db = applied(backend).await;
    let report = db.store.status(None).await.unwrap();
    let ids: Vec<_> = report.companies.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    assert_eq!(report.companies[0].members.len(), 2);
    let ana = icon(&report, "ana");
    assert_eq!(ana.email.reason, Reason::AwaitingFirstImport);
    assert_eq!(ana.email.color, Color::Gray);
    let bob = icon(&report, "bob");
    assert_eq!(bob.capture.reason, Reason::SeatMissing);
    let gil = icon(&report, "gil");
    assert_eq!(gil.email.reason, Reason::MemberNotConnected);
    let globex_banners: Vec<_> = report.companies[1]
        .banners
        .iter()
        .map(|b| b.code.as_str())
        .collect();
    assert_eq!(globex_banners, ["members_not_connected"]);
    let acme_banners: Vec<_> = report.companies[0]
        .banners
        .iter()
        .map(|b| b.code.as_str())
        .collect();
    assert_eq!(acme_banners, ["members_seat_missing"]);
    assert_eq!(db.count("SELECT COUNT(*) FROM sync_state").await, 6);
    let credentials = db
        .strings("SELECT credential_refs FROM companies WHERE id = 'acme'")
        .await;
    assert!(
        credentials[0][0]
            .as_deref()
            .unwrap()
            .contains("service_account_key_file")
    );
}

async fn apply_bad_write_leaves_nothing(backend: Backend) {
    let db = applied(backend).await;
    let before = db.count("SELECT COUNT(*) FROM members").await;
    // Valid on its own, but moves ana to another company: refused, and nothing of the
    // file (not even the new company listed first) is written.
    let moved = include_str!("../../../tests/fixtures/store/moved-member.toml");
    let tenants = parse_tenants(moved).unwrap();
    let error = db.store.apply_tenants(&tenants, NOW).await.unwrap_err();
    assert!(
        matches!(error, StoreError::MemberInOtherCompany { ref member_id, .. } if member_id == "ana"),
        "{error}"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM companies").await, 2);
    assert_eq!(db.count("SELECT COUNT(*) FROM members").await, before);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM members WHERE active = FALSE")
            .await,
        0
    );

    // A file that does not parse never reaches the store.
    let error = parse_tenants(&TENANTS.replace("bob@acme.test", "bob")).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].field, "companies[0].members[1].email");
    assert_eq!(error.problems[0].line, 18);
}

async fn apply_is_idempotent(backend: Backend) {
    let db = applied(backend).await;
    let first = db.store.status(None).await.unwrap();
    let changes = db.count("SELECT COUNT(*) FROM status_changes").await;
    let tenants = parse_tenants(TENANTS).unwrap();
    let summary = db
        .store
        .apply_tenants(&tenants, NOW + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(summary.members_deactivated, 0);
    let second = db.store.status(None).await.unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM status_changes").await,
        changes
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM members").await, 3);
    for (a, b) in first.companies.iter().zip(&second.companies) {
        assert_eq!(a.banners, b.banners);
        for (x, y) in a.members.iter().zip(&b.members) {
            assert_eq!(
                (x.email.reason, x.email.since),
                (y.email.reason, y.email.since)
            );
            assert_eq!(
                (x.capture.reason, x.capture.since),
                (y.capture.reason, y.capture.since)
            );
        }
    }
}

async fn apply_deactivates_absent_members_and_keeps_history(backend: Backend) {
    let db = applied(backend).await;
    db.store
        .record_attempt(
            &attempt("bob", Channel::Email, Outcome::Success, NOW),
            NOW,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let without_bob = TENANTS.replace("[[companies.members]]\nid = \"bob\"\nemail = \"bob@acme.test\"\nrecording_enabled = true\n", "");
    assert_ne!(without_bob, TENANTS);
    let summary = db
        .store
        .apply_tenants(&parse_tenants(&without_bob).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(summary.members_deactivated, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM members WHERE id = 'bob' AND active = FALSE AND deactivated_at IS NOT NULL").await, 1);
    assert!(
        db.count("SELECT COUNT(*) FROM status_changes WHERE member_id = 'bob'")
            .await
            > 0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts WHERE member_id = 'bob'")
            .await,
        1
    );
    let report = db.store.status(Some("acme")).await.unwrap();
    let ids: Vec<_> = report.companies[0]
        .members
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids, ["ana"]);
    // No banner counts bob any more.
    assert!(
        report.companies[0].banners.is_empty(),
        "{:?}",
        report.companies[0].banners
    );
    let jobs = db
        .store
        .claim_due("w", NOW + Duration::hours(1), Duration::minutes(1), 100)
        .await
        .unwrap();
    assert!(jobs.iter().all(|job| job.context.member_id != "bob"));

    // Listing bob again reactivates him.
    db.store
        .apply_tenants(&parse_tenants(TENANTS).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM members WHERE id = 'bob' AND active AND deactivated_at IS NULL"
        )
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------
// leasing

async fn many_members(backend: Backend, count: usize) -> TestDb {
    let db = TestDb::new(backend).await;
    let mut text = String::from(
        "[[companies]]\nid = \"big\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\nsettings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n",
    );
    for i in 0..count {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"m{i:04}\"\nemail = \"m{i}@big.test\"\n"
        ));
    }
    db.store
        .apply_tenants(&parse_tenants(&text).unwrap(), NOW)
        .await
        .unwrap();
    db
}

/// A tenants file of Google companies with `members` members each (`{company}{i}`).
fn companies_text(companies: &[(&str, usize)]) -> String {
    let mut text = String::new();
    for (company, members) in companies {
        text.push_str(&format!(
            "[[companies]]\nid = \"{company}\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\nsettings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n"
        ));
        for i in 0..*members {
            text.push_str(&format!(
                "[[companies.members]]\nid = \"{company}{i:02}\"\nemail = \"m{i}@{company}.test\"\n"
            ));
        }
    }
    text
}

async fn claims_take_turns_across_companies(backend: Backend) {
    let db = TestDb::new(backend).await;
    // `big` has 40 jobs due an hour before `small`'s 4: oldest-first would give big only.
    let big = parse_tenants(&companies_text(&[("big", 20)])).unwrap();
    db.store
        .apply_tenants(&big, NOW - Duration::hours(1))
        .await
        .unwrap();
    let both = parse_tenants(&companies_text(&[("big", 20), ("small", 2)])).unwrap();
    db.store.apply_tenants(&both, NOW).await.unwrap();
    let lease = Duration::minutes(5);
    let by_company = |jobs: &[Job]| {
        let mut counts = std::collections::BTreeMap::new();
        for job in jobs {
            *counts.entry(job.context.company_id.clone()).or_insert(0) += 1;
        }
        counts.into_iter().collect::<Vec<(String, i32)>>()
    };

    // Turns: each company's oldest, then each one's second, … at most 3 of one company.
    let first = db
        .store
        .claim_due_fair("w", NOW, lease, 6, 3, &[])
        .await
        .unwrap();
    assert_eq!(
        by_company(&first),
        [("big".to_owned(), 3), ("small".to_owned(), 3)]
    );
    assert_eq!(
        first[0].context.company_id, "big",
        "the older company's turn comes first"
    );
    assert!(first.iter().all(|job| job.lease_owner == "w"));
    let big_ids: Vec<&str> = first
        .iter()
        .filter(|job| job.context.company_id == "big")
        .map(|job| job.context.member_id.as_str())
        .collect();
    assert_eq!(
        big_ids,
        ["big00", "big00", "big01"],
        "oldest first within a company"
    );

    // A skipped company (at its share of the worker's permits) gets nothing.
    let second = db
        .store
        .claim_due_fair("w", NOW, lease, 5, 5, &["big".to_owned()])
        .await
        .unwrap();
    assert_eq!(by_company(&second), [("small".to_owned(), 1)]);

    // The plain claim takes turns too; with only one company due it takes its backlog.
    let third = db.store.claim_due("w", NOW, lease, 4).await.unwrap();
    assert_eq!(by_company(&third), [("big".to_owned(), 4)]);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM sync_state WHERE lease_owner = 'w'")
            .await,
        11
    );
}

async fn two_claimers_never_get_the_same_job(backend: Backend) {
    let db = many_members(backend, 30).await;
    // A second store on the same database, as a second replica would have.
    let other = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    let claim = |store: Store, owner: &'static str| async move {
        let mut claimed = Vec::new();
        loop {
            let jobs = store
                .claim_due(owner, NOW, Duration::minutes(5), 7)
                .await
                .unwrap();
            if jobs.is_empty() {
                return claimed;
            }
            claimed.extend(jobs);
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claim(db.store.clone(), "replica-a")),
        tokio::spawn(claim(other.clone(), "replica-b")),
    );
    let (a, b): (Vec<Job>, Vec<Job>) = (a.unwrap(), b.unwrap());
    let key = |job: &Job| (job.context.member_id.clone(), job.channel);
    let a_keys: HashSet<_> = a.iter().map(key).collect();
    let b_keys: HashSet<_> = b.iter().map(key).collect();
    assert_eq!(a_keys.len(), a.len());
    assert_eq!(b_keys.len(), b.len());
    assert!(
        a_keys.is_disjoint(&b_keys),
        "both claimed {:?}",
        a_keys.intersection(&b_keys).collect::<Vec<_>>()
    );
    assert_eq!(a.len() + b.len(), 60);
    other.close().await;
}

async fn expired_leases_are_reclaimed(backend: Backend) {
    let db = many_members(backend, 2).await;
    let lease = Duration::minutes(1);
    let first = db.store.claim_due("a", NOW, lease, 10).await.unwrap();
    assert_eq!(first.len(), 4);
    assert!(
        first
            .iter()
            .all(|job| job.lease_owner == "a" && job.lease_expires_at == NOW + lease)
    );
    // Still leased: nothing for b.
    assert!(
        db.store
            .claim_due("b", NOW + Duration::seconds(30), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // a extends one lease; the other three expire and go to b.
    assert!(
        db.store
            .heartbeat(&first[0], "a", NOW + Duration::minutes(10))
            .await
            .unwrap()
    );
    let later = NOW + Duration::seconds(61);
    let second = db.store.claim_due("b", later, lease, 10).await.unwrap();
    assert_eq!(second.len(), 3);
    assert!(second.iter().all(|job| job.lease_owner == "b"));
    // Each comes with the context the worker runs it with: what `job_context` reads.
    for job in &first {
        assert_eq!(
            Some(&job.context),
            db.store
                .job_context(&job.context.member_id)
                .await
                .unwrap()
                .as_ref(),
            "{}",
            job.context.member_id
        );
    }
    // Each says whose expired lease it took over (the daemon's reclaim metric).
    assert!(first.iter().all(|job| job.reclaimed_from.is_none()));
    assert!(
        second
            .iter()
            .all(|job| job.reclaimed_from.as_deref() == Some("a"))
    );
    // a lost those: its heartbeat and release say so.
    assert!(
        !db.store
            .heartbeat(&first[1], "a", later + lease)
            .await
            .unwrap()
    );
    assert!(!db.store.release(&first[1], "a", None).await.unwrap());
    // b gives one back, due at once: claimable again.
    assert!(
        db.store
            .release(&second[0], "b", Some(later))
            .await
            .unwrap()
    );
    let third = db.store.claim_due("c", later, lease, 10).await.unwrap();
    assert_eq!(third.len(), 1);
    // Released, not expired: a free job, no reclaim.
    assert_eq!(third[0].reclaimed_from, None);
    assert_eq!(
        (third[0].context.member_id.as_str(), third[0].channel),
        (second[0].context.member_id.as_str(), second[0].channel)
    );
}

/// The queue lag's start: the oldest due job that no live lease holds.
async fn oldest_waiting_due_job_skips_live_leases_and_future_jobs(backend: Backend) {
    let db = many_members(backend, 2).await;
    let lease = Duration::minutes(1);
    // Before anything is due: nothing waits.
    let before = NOW - Duration::seconds(1);
    assert_eq!(db.store.oldest_waiting_due_at(before).await.unwrap(), None);
    // All four jobs became due at apply time.
    let later = NOW + Duration::seconds(30);
    assert_eq!(
        db.store.oldest_waiting_due_at(later).await.unwrap(),
        Some(NOW)
    );
    // Three claimed: the fourth still waits since NOW.
    let claimed = db.store.claim_due("a", later, lease, 3).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        db.store.oldest_waiting_due_at(later).await.unwrap(),
        Some(NOW)
    );
    // All claimed: nothing waits while the leases live.
    let last = db.store.claim_due("a", later, lease, 3).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(db.store.oldest_waiting_due_at(later).await.unwrap(), None);
    // One is given back due an hour from now: still nothing waits.
    db.store
        .release(&last[0], "a", Some(NOW + Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(db.store.oldest_waiting_due_at(later).await.unwrap(), None);
    // The other leases lapse: those jobs wait again, since NOW.
    let expired = later + lease;
    assert_eq!(
        db.store.oldest_waiting_due_at(expired).await.unwrap(),
        Some(NOW)
    );
    // A company no longer in the tenants file is deactivated: its lapsed jobs never wait.
    db.store
        .apply_tenants(&parse_tenants(TENANTS).unwrap(), NOW)
        .await
        .unwrap();
    let claimable = db.store.claim_due("b", expired, lease, 100).await.unwrap();
    assert!(!claimable.is_empty());
    assert!(claimable.iter().all(|job| job.context.company_id != "big"));
    assert_eq!(db.store.oldest_waiting_due_at(expired).await.unwrap(), None);
}

async fn attempt_write_releases_lease_and_advances_cursor(backend: Backend) {
    let db = many_members(backend, 1).await;
    let jobs = db
        .store
        .claim_due("w", NOW, Duration::minutes(5), 10)
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|job| job.channel == Channel::Email)
        .unwrap();
    assert_eq!(job.cursor, None);
    let mut record = attempt(
        &job.context.member_id,
        Channel::Email,
        Outcome::Success,
        NOW + Duration::seconds(10),
    );
    record.lease_owner = Some("w".to_owned());
    record.next_cursor = Some("history-42".to_owned());
    let result = db
        .store
        .record_attempt(
            &record,
            NOW + Duration::seconds(10),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(result.sync_state_updated);
    // Due again later, with the new cursor, and not leased.
    assert!(
        db.store
            .claim_due("w", NOW + Duration::minutes(1), Duration::minutes(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = db
        .store
        .claim_due("w", NOW + Duration::minutes(6), Duration::minutes(5), 10)
        .await
        .unwrap();
    let email = again.iter().find(|j| j.channel == Channel::Email).unwrap();
    assert_eq!(email.cursor.as_deref(), Some("history-42"));
    // A transient failure counts, and keeps the cursor.
    let mut failed = attempt(
        &job.context.member_id,
        Channel::Email,
        Outcome::RateLimited,
        NOW + Duration::minutes(7),
    );
    failed.lease_owner = Some("w".to_owned());
    db.store
        .record_attempt(
            &failed,
            NOW + Duration::minutes(7),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let next = db
        .store
        .claim_due("w", NOW + Duration::minutes(13), Duration::minutes(5), 10)
        .await
        .unwrap();
    let email = next.iter().find(|j| j.channel == Channel::Email).unwrap();
    assert_eq!(email.cursor.as_deref(), Some("history-42"));
    assert_eq!(email.consecutive_transient_failures, 1);
    // Someone else's live lease: the attempt is kept, the sync state is not touched.
    let mut stray = attempt(
        &job.context.member_id,
        Channel::Email,
        Outcome::Success,
        NOW + Duration::minutes(14),
    );
    stray.lease_owner = Some("other".to_owned());
    let result = db
        .store
        .record_attempt(
            &stray,
            NOW + Duration::minutes(14),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!result.sync_state_updated);
}

// ---------------------------------------------------------------------------------------
// attempts and statuses

async fn attempts_drive_statuses_history_and_banners(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    let mut record = attempt("ana", Channel::Email, Outcome::Success, NOW);
    record.email_items = vec![
        EmailItem {
            provider_id: "msg-1".into(),
            subject: Some("hello".into()),
            participants: vec!["ana@acme.test".into(), "x@y.test".into()],
            sent_at: Some(NOW),
            ..EmailItem::default()
        },
        EmailItem {
            provider_id: "msg-2".into(),
            ..EmailItem::default()
        },
    ];
    db.store
        .record_attempt(&record, NOW, &options)
        .await
        .unwrap();
    // The same items again (a retried page) stay two rows.
    let mut retry = attempt(
        "ana",
        Channel::Email,
        Outcome::Success,
        NOW + Duration::seconds(1),
    );
    retry.email_items = record.email_items.clone();
    db.store
        .record_attempt(&retry, NOW + Duration::seconds(1), &options)
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM email_items WHERE member_id = 'ana'")
            .await,
        2
    );
    // And twice within one batch: still one row per provider id, the later copy wins.
    let mut first = attempt("bob", Channel::Email, Outcome::Success, NOW);
    first.email_items = vec![EmailItem {
        provider_id: "msg-9".into(),
        subject: Some("old".into()),
        ..EmailItem::default()
    }];
    let mut second = attempt(
        "bob",
        Channel::Email,
        Outcome::Success,
        NOW + Duration::seconds(1),
    );
    second.email_items = vec![EmailItem {
        provider_id: "msg-9".into(),
        subject: Some("new".into()),
        ..EmailItem::default()
    }];
    second.next_cursor = None;
    db.store
        .record_attempts(
            &[first.clone(), second],
            NOW + Duration::seconds(1),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        db.strings("SELECT subject FROM email_items WHERE member_id = 'bob'")
            .await,
        [vec![Some("new".to_owned())]]
    );
    // The cursor is the latest one given in the batch (the second kept it).
    assert_eq!(
        db.strings("SELECT cursor FROM sync_state WHERE member_id = 'bob' AND channel = 'email'")
            .await,
        [vec![first.next_cursor.clone()]]
    );
    let mut calendar = attempt("ana", Channel::Calendar, Outcome::Success, NOW);
    calendar.calendar_items = vec![CalendarItem {
        provider_id: "evt-1".into(),
        conference_link: Some("https://meet.test/abc".into()),
        starts_at: Some(NOW),
        ends_at: Some(NOW + Duration::hours(1)),
        ..CalendarItem::default()
    }];
    db.store
        .record_attempt(&calendar, NOW, &options)
        .await
        .unwrap();

    let report = db.store.status(Some("acme")).await.unwrap();
    let ana = icon(&report, "ana");
    assert_eq!(
        (ana.email.color, ana.email.reason),
        (Color::Green, Reason::Importing)
    );
    assert_eq!(ana.capture.reason, Reason::Importing);
    assert_eq!(
        ana.email.last_attempt_id,
        Some(retry.attempt_id.to_string())
    );
    assert_eq!(
        ana.calendar.last_attempt_id,
        Some(calendar.attempt_id.to_string())
    );
    let green_since = ana.email.since;

    // Three transient failures in a batch: red technical_failure and a red banner.
    let batch: Vec<_> = (1..=3)
        .map(|i| {
            attempt(
                "ana",
                Channel::Email,
                Outcome::ProviderError,
                NOW + Duration::minutes(i),
            )
        })
        .collect();
    let results = db
        .store
        .record_attempts(&batch, NOW + Duration::minutes(3), &options)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|result| result.sync_state_updated));
    assert_eq!(
        db.count("SELECT consecutive_transient_failures FROM sync_state WHERE member_id = 'ana' AND channel = 'email'").await,
        3
    );
    let report = db.store.status(Some("acme")).await.unwrap();
    let ana = icon(&report, "ana");
    assert_eq!(
        (ana.email.color, ana.email.reason),
        (Color::Red, Reason::TechnicalFailure)
    );
    assert_eq!(ana.email.since, NOW + Duration::minutes(3));
    assert_eq!(
        ana.email.last_attempt_id,
        Some(batch[2].attempt_id.to_string())
    );
    assert!(ana.email.message.contains("technical") || !ana.email.message.is_empty());
    let banners: Vec<_> = report.companies[0]
        .banners
        .iter()
        .map(|b| (b.code.as_str(), b.count))
        .collect();
    assert_eq!(
        banners,
        [
            ("members_seat_missing", 1),
            ("members_technical_problem", 1)
        ]
    );
    assert!(green_since < ana.email.since);
    let history = db.strings("SELECT from_reason, to_reason FROM status_changes WHERE member_id = 'ana' AND icon = 'email' ORDER BY id").await;
    assert_eq!(
        history,
        [
            vec![None, Some("awaiting_first_import".to_owned())],
            vec![
                Some("awaiting_first_import".to_owned()),
                Some("importing".to_owned())
            ],
            vec![
                Some("importing".to_owned()),
                Some("technical_failure".to_owned())
            ],
        ]
    );
    // The microphone shows the failing channel's attempt, even when the other channel
    // succeeded after it.
    let later = attempt(
        "ana",
        Channel::Calendar,
        Outcome::Success,
        NOW + Duration::minutes(4),
    );
    db.store
        .record_attempt(&later, NOW + Duration::minutes(4), &options)
        .await
        .unwrap();
    let report = db.store.status(Some("acme")).await.unwrap();
    let ana = icon(&report, "ana");
    assert_eq!(ana.capture.reason, Reason::TechnicalFailure);
    assert_eq!(
        ana.capture.last_attempt_id,
        Some(batch[2].attempt_id.to_string())
    );
    assert_eq!(
        ana.calendar.last_attempt_id,
        Some(later.attempt_id.to_string())
    );
    // Unknown members are refused, and nothing of the batch is kept.
    let before = db.count("SELECT COUNT(*) FROM import_attempts").await;
    let bad = [
        attempt(
            "ana",
            Channel::Email,
            Outcome::Success,
            NOW + Duration::minutes(9),
        ),
        attempt("nobody", Channel::Email, Outcome::Success, NOW),
    ];
    let error = db
        .store
        .record_attempts(&bad, NOW + Duration::minutes(9), &options)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::UnknownMember { .. }), "{error}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts").await,
        before
    );
}

async fn injected_failure_mid_write_leaves_nothing(backend: Backend) {
    let db = applied(backend).await;
    let tables = [
        "SELECT COUNT(*) FROM import_attempts",
        "SELECT COUNT(*) FROM email_items",
        "SELECT COUNT(*) FROM status_changes",
        "SELECT COUNT(*) FROM company_banners",
        "SELECT COUNT(*) FROM sync_state WHERE cursor IS NOT NULL OR last_attempt_at IS NOT NULL",
        "SELECT COUNT(*) FROM member_status WHERE reason = 'technical_failure' OR reason = 'importing'",
    ];
    let mut before = Vec::new();
    for sql in tables {
        before.push(db.count(sql).await);
    }
    let status_before = db.store.status(None).await.unwrap();
    for point in [
        FailPoint::AfterAttemptRow,
        FailPoint::AfterItems,
        FailPoint::AfterSyncState,
        FailPoint::AfterMemberStatus,
        FailPoint::AfterBanners,
    ] {
        let mut record = attempt("ana", Channel::Email, Outcome::Success, NOW);
        record.email_items = vec![EmailItem {
            provider_id: "msg-1".into(),
            ..EmailItem::default()
        }];
        let error = db
            .store
            .record_attempt(
                &record,
                NOW,
                &WriteOptions {
                    fail_at: Some(point),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::InjectedFailure(at) if at == point),
            "{error}"
        );
        for (sql, expected) in tables.iter().zip(&before) {
            assert_eq!(
                db.count(sql).await,
                *expected,
                "{sql} after failure at {point:?}"
            );
        }
        assert_eq!(
            db.store.status(None).await.unwrap(),
            status_before,
            "status after {point:?}"
        );
    }
    // The same write without a fail point lands whole.
    let mut record = attempt("ana", Channel::Email, Outcome::Success, NOW);
    record.email_items = vec![EmailItem {
        provider_id: "msg-1".into(),
        ..EmailItem::default()
    }];
    db.store
        .record_attempt(&record, NOW, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts").await,
        before[0] + 1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM email_items").await,
        before[1] + 1
    );
}

async fn recompute_company_notices_stalled_imports(backend: Backend) {
    let db = applied(backend).await;
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, NOW),
            NOW,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    db.store
        .recompute_company("acme", NOW + Duration::minutes(30))
        .await
        .unwrap();
    let report = db.store.status(Some("acme")).await.unwrap();
    assert_eq!(icon(&report, "ana").email.reason, Reason::Importing);
    db.store
        .recompute_company("acme", NOW + Duration::hours(2))
        .await
        .unwrap();
    let report = db.store.status(Some("acme")).await.unwrap();
    assert_eq!(icon(&report, "ana").email.reason, Reason::ImportStalled);
    assert!(
        report.companies[0]
            .banners
            .iter()
            .any(|b| b.code.as_str() == "members_technical_problem")
    );
    let error = db.store.recompute_company("nope", NOW).await.unwrap_err();
    assert!(matches!(error, StoreError::UnknownCompany { .. }));
}

/// The stall pass's targeted recompute: only members whose latest attempt became older
/// than `stall_after` since their status was evaluated are recomputed, once.
async fn recompute_stale_recomputes_only_what_time_changed(backend: Backend) {
    let db = applied(backend).await;
    for (member, at) in [("ana", NOW), ("bob", NOW + Duration::minutes(90))] {
        db.store
            .record_attempt(
                &attempt(member, Channel::Email, Outcome::Success, at),
                at,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    // Nothing is older than an hour yet.
    let recomputed = db.store.recompute_stale(NOW + Duration::minutes(30)).await;
    assert_eq!(recomputed.unwrap(), 0);
    // Two hours on, ana's email (latest attempt at NOW) is stalled; bob's (30 min old)
    // is not looked at. Calendars without attempts never change with time.
    let later = NOW + Duration::hours(2);
    assert_eq!(db.store.recompute_stale(later).await.unwrap(), 1);
    let report = db.store.status(Some("acme")).await.unwrap();
    assert_eq!(icon(&report, "ana").email.reason, Reason::ImportStalled);
    assert_eq!(icon(&report, "bob").email.reason, Reason::Importing);
    let banner = report.companies[0]
        .banners
        .iter()
        .find(|b| b.code.as_str() == "members_technical_problem")
        .expect("the stalled member is counted");
    assert_eq!(banner.count, 1);
    // ana was evaluated after her attempt became old: the next pass leaves her alone.
    let again = db.store.recompute_stale(later + Duration::minutes(1)).await;
    assert_eq!(again.unwrap(), 0);
    // bob's turn comes once his attempt is an hour old; then both are stalled.
    let last = NOW + Duration::minutes(151);
    assert_eq!(db.store.recompute_stale(last).await.unwrap(), 1);
    let report = db.store.status(Some("acme")).await.unwrap();
    assert_eq!(icon(&report, "bob").email.reason, Reason::ImportStalled);
    // A new attempt makes ana current again, and a full recompute agrees with the passes.
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, last),
            last,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let before = db.store.status(None).await.unwrap();
    db.store.recompute_company("acme", last).await.unwrap();
    let after = db.store.status(None).await.unwrap();
    assert_eq!(icon(&after, "ana").email.reason, Reason::Importing);
    assert_eq!(
        serde_json::to_value(&before.companies[0].banners).unwrap(),
        serde_json::to_value(&after.companies[0].banners).unwrap(),
    );
    // The members gauge's grouped counts match the report's icons.
    let mut expected: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for member in after.companies.iter().flat_map(|c| &c.members) {
        for (name, shown) in [
            ("capture", &member.capture),
            ("email", &member.email),
            ("calendar", &member.calendar),
        ] {
            *expected
                .entry((name.to_owned(), shown.reason.as_str().to_owned()))
                .or_default() += 1;
        }
    }
    let counted: std::collections::BTreeMap<(String, String), u64> = db
        .store
        .status_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(icon, reason, count)| {
            (
                (icon.as_str().to_owned(), reason.as_str().to_owned()),
                count,
            )
        })
        .collect();
    assert_eq!(counted, expected);
    assert_eq!(
        counted.get(&("email".to_owned(), "import_stalled".to_owned())),
        Some(&1)
    );
}

/// The server settings the daemon warns about and the benchmark records, and migration 4's
/// vacuum trigger on `sync_state` (PostgreSQL only; SQLite keeps no dead row versions).
async fn postgres_settings_and_the_queue_vacuum(backend: Backend) {
    let db = TestDb::new(backend).await;
    let settings = db.store.server_settings().await.unwrap();
    match backend {
        Backend::Sqlite => {
            assert!(settings.is_empty());
            assert!(!db.store.autovacuum_off().await);
        }
        Backend::Postgres => {
            let names: Vec<&str> = settings.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "autovacuum",
                    "checkpoint_timeout",
                    "max_wal_size",
                    "server_version",
                    "shared_buffers",
                    "synchronous_commit"
                ]
            );
            let autovacuum = &settings[0].1;
            assert!(autovacuum == "on" || autovacuum == "off", "{autovacuum}");
            assert_eq!(db.store.autovacuum_off().await, autovacuum == "off");
            let tuned = db
                .count(
                    "SELECT COUNT(*) FROM pg_class WHERE relname = 'sync_state' \
                     AND 'autovacuum_vacuum_threshold=10000' = ANY(reloptions) \
                     AND 'autovacuum_vacuum_scale_factor=0' = ANY(reloptions)",
                )
                .await;
            assert_eq!(tuned, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// encryption

fn key(id: &str, byte: u8) -> EncryptionKey {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    EncryptionKey::parse(id, &SecretString::from(text)).unwrap()
}

async fn refresh_tokens_are_sealed_per_row(backend: Backend) {
    let db = applied(backend).await;
    let k1 = key("k1", 1);
    db.store.verify_key(&k1, NOW).await.unwrap();
    db.store.verify_key(&k1, NOW).await.unwrap();
    let token = SecretString::from("1//refresh-token-gil");
    let scopes = vec!["Mail.Read".to_owned(), "Calendars.Read".to_owned()];
    db.store
        .put_member_grant(
            "gil",
            MemberConnection::Connected,
            &scopes,
            Some(&token),
            &k1,
            NOW,
        )
        .await
        .unwrap();
    // Round trip.
    let grant = db
        .store
        .member_grant("gil", Some(&k1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.state, MemberConnection::Connected);
    assert_eq!(grant.scopes, scopes);
    assert_eq!(
        grant.refresh_token.unwrap().expose_secret(),
        "1//refresh-token-gil"
    );
    // Never stored in plaintext.
    let stored = db.count("SELECT COUNT(*) FROM member_grants WHERE key_id = 'k1' AND refresh_token_ciphertext IS NOT NULL").await;
    assert_eq!(stored, 1);
    // The grant is a classifier input: gil is no longer "not connected".
    let report = db.store.status(Some("globex")).await.unwrap();
    assert_eq!(
        icon(&report, "gil").email.reason,
        Reason::AwaitingFirstImport
    );
    assert!(report.companies[0].banners.is_empty());

    // Wrong key with the same id: no plaintext, a clear error naming the member.
    let wrong = key("k1", 2);
    let error = db
        .store
        .member_grant("gil", Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::Undecryptable { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("gil"));
    assert!(!error.to_string().contains("refresh-token"));
    let error = db.store.verify_key(&wrong, NOW).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::WrongKey { .. })),
        "{error}"
    );
    // Another key id: a mismatch, not a silent failure; no key: an error too.
    let error = db
        .store
        .member_grant("gil", Some(&key("k2", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::KeyMismatch { .. })),
        "{error}"
    );
    let error = db.store.member_grant("gil", None).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::MissingKey { .. })),
        "{error}"
    );

    // A ciphertext moved to another member's row does not open there.
    db.store
        .put_member_grant("ana", MemberConnection::Connected, &scopes, None, &k1, NOW)
        .await
        .unwrap();
    db.execute("UPDATE member_grants SET refresh_token_ciphertext = (SELECT refresh_token_ciphertext FROM member_grants WHERE member_id = 'gil'), key_id = 'k1' WHERE member_id = 'ana'").await;
    let error = db.store.member_grant("ana", Some(&k1)).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::Undecryptable { .. })),
        "{error}"
    );
    assert!(
        db.store
            .member_grant("nobody", Some(&k1))
            .await
            .unwrap()
            .is_none()
    );
}

/// Issue 21 §5: an attempt that meets a dead grant marks it invalid in its own
/// transaction (the icon computed there sees it); a grant stored after the attempt
/// started (the member connected again meanwhile) is left alone; a recheck that works
/// makes it connected again; company-wide members have no grant to touch.
async fn dead_grants_are_marked_invalid_by_the_attempt_that_met_them(backend: Backend) {
    let db = applied(backend).await;
    let k1 = key("k1", 1);
    db.store.verify_key(&k1, NOW).await.unwrap();
    let token = SecretString::from("1//refresh-token-gil");
    let scopes = vec!["Mail.Read".to_owned()];
    let put = |at: OffsetDateTime| {
        let (store, token, scopes, k1) = (&db.store, &token, &scopes, &k1);
        async move {
            store
                .put_member_grant(
                    "gil",
                    MemberConnection::Connected,
                    scopes,
                    Some(token),
                    k1,
                    at,
                )
                .await
                .unwrap();
        }
    };
    let state = || async {
        db.store
            .member_grant("gil", Some(&k1))
            .await
            .unwrap()
            .unwrap()
    };

    put(NOW).await;
    let first = NOW + Duration::minutes(1);
    db.store
        .record_attempt(
            &attempt("gil", Channel::Email, Outcome::GrantInvalid, first),
            first,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let grant = state().await;
    assert_eq!(grant.state, MemberConnection::Invalid);
    assert_eq!(
        grant.updated_at, first,
        "the recheck clock starts at the write"
    );
    assert!(
        grant.refresh_token.is_some(),
        "the token is kept for the recheck"
    );

    // A recheck that works: connected again.
    let recheck = NOW + Duration::hours(25);
    db.store
        .record_attempt(
            &attempt("gil", Channel::Calendar, Outcome::Success, recheck),
            recheck,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(state().await.state, MemberConnection::Connected);

    // The member connects again while an attempt with the old token runs: its
    // grant_invalid must not undo the new grant.
    let started = recheck + Duration::minutes(10);
    let mut stale = attempt(
        "gil",
        Channel::Email,
        Outcome::GrantInvalid,
        started + Duration::minutes(1),
    );
    stale.started_at = started;
    put(started + Duration::seconds(30)).await;
    db.store
        .record_attempt(
            &stale,
            started + Duration::minutes(1),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        state().await.state,
        MemberConnection::Connected,
        "the new grant stays"
    );

    // Company-wide members have no grant; a grant_invalid there writes none.
    let later = started + Duration::minutes(5);
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::GrantInvalid, later),
            later,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        db.store
            .member_grant("ana", Some(&k1))
            .await
            .unwrap()
            .is_none()
    );
}

async fn rotate_key_reseals_every_secret_in_one_transaction(backend: Backend) {
    let db = applied(backend).await;
    let (old, new) = (key("k1", 1), key("k2", 2));
    db.store.verify_key(&old, NOW).await.unwrap();
    let scopes = vec!["Mail.Read".to_owned()];
    for (member, token) in [("gil", "1//token-gil"), ("ana", "1//token-ana")] {
        db.store
            .put_member_grant(
                member,
                MemberConnection::Connected,
                &scopes,
                Some(&SecretString::from(token)),
                &old,
                NOW,
            )
            .await
            .unwrap();
    }
    // A grant without a token has nothing to re-seal.
    db.store
        .put_member_grant("bob", MemberConnection::Connected, &scopes, None, &old, NOW)
        .await
        .unwrap();

    // Same id, wrong old key, or a token under a third key: an error and nothing changes.
    let error = db
        .store
        .rotate_key(&old, &key("k1", 9), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::SameKeyId { .. })),
        "{error}"
    );
    let error = db
        .store
        .rotate_key(&key("k1", 9), &new, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::WrongKey { .. })),
        "{error}"
    );
    db.execute("UPDATE member_grants SET key_id = 'k0' WHERE member_id = 'ana'")
        .await;
    let error = db.store.rotate_key(&old, &new, NOW).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::KeyMismatch { .. })),
        "{error}"
    );
    assert!(!error.to_string().contains("token-"));
    db.execute("UPDATE member_grants SET key_id = 'k1' WHERE member_id = 'ana'")
        .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM member_grants WHERE key_id = 'k1' AND refresh_token_ciphertext IS NOT NULL").await,
        2
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM encryption_keys WHERE key_id = 'k2'")
            .await,
        0,
        "a failed rotation registers no key"
    );

    // The rotation: every token opens with the new key only, and the new key is registered.
    let rotation = db.store.rotate_key(&old, &new, NOW).await.unwrap();
    assert_eq!((rotation.resealed, rotation.already_new), (2, 0));
    for (member, token) in [("gil", "1//token-gil"), ("ana", "1//token-ana")] {
        let grant = db
            .store
            .member_grant(member, Some(&new))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(grant.refresh_token.unwrap().expose_secret(), token);
        let error = db.store.member_grant(member, Some(&old)).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Crypto(CryptoError::KeyMismatch { .. })),
            "{error}"
        );
    }
    db.store.verify_key(&new, NOW).await.unwrap();
    let error = db.store.verify_key(&key("k2", 3), NOW).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Crypto(CryptoError::WrongKey { .. })),
        "{error}"
    );
    // Statuses are untouched: a rotation changes no grant's state.
    let report = db.store.status(Some("globex")).await.unwrap();
    assert_eq!(
        icon(&report, "gil").email.reason,
        Reason::AwaitingFirstImport
    );

    // Running it again finds everything under the new key and changes nothing.
    let again = db.store.rotate_key(&old, &new, NOW).await.unwrap();
    assert_eq!((again.resealed, again.already_new), (0, 2));
}

/// A user-by-user member connects while their job is claimed and about to be given back
/// for want of a grant (`make_due` leaves leased rows alone): the release keeps the job
/// due, so the first import does not wait for the recheck. Without a grant the recheck
/// applies.
async fn a_grant_stored_during_a_no_grant_skip_keeps_the_job_due(backend: Backend) {
    let db = applied(backend).await;
    let k1 = key("k1", 1);
    db.store.verify_key(&k1, NOW).await.unwrap();
    let claim = |owner: &'static str, at: OffsetDateTime| {
        let store = &db.store;
        async move {
            store
                .claim_due(owner, at, Duration::minutes(2), 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|job| job.context.member_id == "gil")
                .collect::<Vec<_>>()
        }
    };
    let later = NOW + Duration::minutes(1);
    let jobs = claim("w1", later).await;
    assert_eq!(jobs.len(), 2, "gil's two channels were due");
    let recheck = NOW + Duration::minutes(30);
    // Email: nobody connected meanwhile, the recheck applies.
    let email = jobs.iter().find(|j| j.channel == Channel::Email).unwrap();
    assert!(
        db.store
            .release_without_grant(email, "w1", recheck)
            .await
            .unwrap()
    );
    // Calendar: gil connects (and the flow's make_due finds the row leased) before it is
    // given back.
    db.store
        .put_member_grant(
            "gil",
            MemberConnection::Connected,
            &["Calendars.Read".to_owned()],
            Some(&SecretString::from("1//gil")),
            &k1,
            later,
        )
        .await
        .unwrap();
    let report = db
        .store
        .make_due("gil", Some(Channel::Calendar), later)
        .await
        .unwrap();
    assert_eq!(report.leased, 1);
    let calendar = jobs
        .iter()
        .find(|j| j.channel == Channel::Calendar)
        .unwrap();
    assert!(
        db.store
            .release_without_grant(calendar, "w1", recheck)
            .await
            .unwrap()
    );
    let again = claim("w2", later + Duration::seconds(1)).await;
    assert_eq!(
        again.iter().map(|j| j.channel).collect::<Vec<_>>(),
        [Channel::Calendar],
        "only the channel whose member connected is due at once"
    );
    // A connected grant without a token cannot end the skip: the recheck applies, or the
    // job would be claimed and skipped in a loop.
    db.store
        .put_member_grant("gil", MemberConnection::Connected, &[], None, &k1, later)
        .await
        .unwrap();
    assert!(
        db.store
            .release_without_grant(&again[0], "w2", recheck)
            .await
            .unwrap()
    );
    assert!(claim("w3", later + Duration::seconds(2)).await.is_empty());
}

async fn make_due_polls_a_member_again_unless_leased(backend: Backend) {
    let db = applied(backend).await;
    let later = NOW + Duration::minutes(1);
    let report = db.store.make_due("ana", None, later).await.unwrap();
    assert_eq!((report.made_due, report.leased), (2, 0));

    // A claimed channel keeps its lease: its attempt's end sets the next due time.
    let jobs = db
        .store
        .claim_due("w1", later, Duration::minutes(2), 100)
        .await
        .unwrap();
    let ana_email = jobs
        .iter()
        .find(|job| job.context.member_id == "ana" && job.channel == Channel::Email)
        .expect("ana's email was due")
        .clone();
    let report = db
        .store
        .make_due("ana", Some(Channel::Email), later)
        .await
        .unwrap();
    assert_eq!((report.made_due, report.leased), (0, 1));

    // Released with a due time an hour away, then made due now: claimed again at once.
    db.store
        .release(&ana_email, "w1", Some(NOW + Duration::hours(1)))
        .await
        .unwrap();
    let soon = NOW + Duration::minutes(2);
    assert!(
        db.store
            .claim_due("w2", soon, Duration::minutes(2), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let report = db
        .store
        .make_due("ana", Some(Channel::Email), soon)
        .await
        .unwrap();
    assert_eq!((report.made_due, report.leased), (1, 0));
    let jobs = db
        .store
        .claim_due("w2", soon, Duration::minutes(2), 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].context.member_id.as_str(), jobs[0].channel),
        ("ana", Channel::Email)
    );

    let error = db.store.make_due("nobody", None, soon).await.unwrap_err();
    assert!(matches!(error, StoreError::UnknownMember { .. }), "{error}");
}

// ---------------------------------------------------------------------------------------
// retention, views, report shape

async fn retention_prunes_old_attempts_and_keeps_status(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    let old = NOW - Duration::days(40);
    for i in 0..5 {
        db.store
            .record_attempt(
                &attempt(
                    "ana",
                    Channel::Email,
                    Outcome::Success,
                    old + Duration::minutes(i),
                ),
                old + Duration::minutes(i),
                &options,
            )
            .await
            .unwrap();
        db.store
            .record_attempt(
                &attempt(
                    "bob",
                    Channel::Email,
                    Outcome::Success,
                    old + Duration::minutes(i),
                ),
                old + Duration::minutes(i),
                &options,
            )
            .await
            .unwrap();
    }
    let recent = attempt("ana", Channel::Email, Outcome::Success, NOW);
    db.store
        .record_attempt(&recent, NOW, &options)
        .await
        .unwrap();
    // ana's calendar: a success 40 days ago, then two transient failures just now. The old
    // success is what keeps her green (rule 11), so pruning must keep it.
    for (at, outcome) in [
        (old, Outcome::Success),
        (NOW - Duration::minutes(2), Outcome::NetworkError),
        (NOW - Duration::minutes(1), Outcome::NetworkError),
    ] {
        db.store
            .record_attempt(
                &attempt("ana", Channel::Calendar, outcome, at),
                at,
                &options,
            )
            .await
            .unwrap();
    }
    let calendar_before = icon(&db.store.status(Some("acme")).await.unwrap(), "ana")
        .calendar
        .reason;
    assert_eq!(calendar_before, Reason::Importing);
    let history = db.count("SELECT COUNT(*) FROM status_changes").await;
    let status = db.store.status(None).await.unwrap();
    let deleted = db
        .store
        .prune_attempts(NOW - Duration::days(30))
        .await
        .unwrap();
    // Each channel keeps its latest three (red_after_consecutive_failures, what the
    // classifier reads): ana loses three old ones (her newest is recent), bob two.
    assert_eq!(deleted, 5);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM import_attempts WHERE member_id = 'ana' AND channel = 'email'"
        )
        .await,
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts WHERE member_id = 'bob'")
            .await,
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM status_changes").await,
        history
    );
    assert_eq!(db.store.status(None).await.unwrap(), status);
    assert_eq!(
        db.store
            .prune_attempts(NOW - Duration::days(30))
            .await
            .unwrap(),
        0
    );
    // Statuses still recompute after pruning (the kept latest attempt says stalled).
    db.store.recompute_company("acme", NOW).await.unwrap();
    let report = db.store.status(Some("acme")).await.unwrap();
    assert_eq!(icon(&report, "bob").email.reason, Reason::ImportStalled);
    assert_eq!(icon(&report, "ana").calendar.reason, calendar_before);
}

async fn admin_views_show_icons_and_banners(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    for i in 0..3 {
        db.store
            .record_attempt(
                &attempt(
                    "bob",
                    Channel::Calendar,
                    Outcome::NetworkError,
                    NOW + Duration::seconds(i),
                ),
                NOW + Duration::seconds(i),
                &options,
            )
            .await
            .unwrap();
    }
    let rows = db
        .strings("SELECT member_id, capture_color, capture_reason, email_color, email_reason, calendar_color, calendar_reason, calendar_last_attempt_id FROM member_status_view WHERE company_id = 'acme' ORDER BY member_id")
        .await;
    let text = |row: &Vec<Option<String>>, i: usize| row[i].clone().unwrap_or_default();
    assert_eq!(rows.len(), 2);
    assert_eq!(text(&rows[1], 0), "bob");
    assert_eq!(
        (text(&rows[1], 1), text(&rows[1], 2)),
        ("red".to_owned(), "technical_failure".to_owned())
    );
    assert_eq!(
        (text(&rows[1], 3), text(&rows[1], 4)),
        ("gray".to_owned(), "awaiting_first_import".to_owned())
    );
    assert_eq!(
        (text(&rows[1], 5), text(&rows[1], 6)),
        ("red".to_owned(), "technical_failure".to_owned())
    );
    assert!(!text(&rows[1], 7).is_empty());
    let banners = db
        .strings("SELECT company_id, code, color, provider, message, resolution FROM company_banner_view ORDER BY company_id, position")
        .await;
    let codes: Vec<_> = banners
        .iter()
        .map(|row| (text(row, 0), text(row, 1), text(row, 2)))
        .collect();
    assert_eq!(
        codes,
        [
            (
                "acme".into(),
                "members_seat_missing".into(),
                "yellow".into()
            ),
            (
                "acme".into(),
                "members_technical_problem".into(),
                "red".into()
            ),
            (
                "globex".into(),
                "members_not_connected".into(),
                "yellow".into()
            ),
        ]
    );
    assert!(
        banners
            .iter()
            .all(|row| !text(row, 4).is_empty() && !text(row, 5).is_empty())
    );
    assert_eq!(
        db.count("SELECT count FROM company_banner_view WHERE code = 'members_technical_problem'")
            .await,
        1
    );
}

async fn status_json_has_the_design_shape(backend: Backend) {
    let db = applied(backend).await;
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, NOW),
            NOW,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let json = serde_json::to_value(db.store.status(None).await.unwrap()).unwrap();
    let company = &json["companies"][0];
    assert_eq!(company["id"], "acme");
    assert_eq!(company["provider"], "google_workspace");
    let banner = &company["banners"][0];
    for field in [
        "code",
        "color",
        "count",
        "provider",
        "message",
        "resolution",
    ] {
        assert!(!banner[field].is_null(), "banner.{field}");
    }
    let member = &company["members"][0];
    assert_eq!(member["id"], "ana");
    assert_eq!(member["email_address"], "ana@acme.test");
    for channel in ["capture", "email", "calendar"] {
        for field in ["color", "reason", "message", "resolution", "since"] {
            assert!(member[channel][field].is_string(), "{channel}.{field}");
        }
        assert!(
            member[channel].get("last_attempt_id").is_some(),
            "{channel}.last_attempt_id"
        );
    }
    assert_eq!(member["email"]["color"], "green");
    assert_eq!(member["email"]["since"], "2026-11-28T12:00:00Z");
    assert!(member["calendar"]["last_attempt_id"].is_null());
}

async fn job_context_reads_settings_and_credential_references(backend: Backend) {
    let db = applied(backend).await;
    db.store.ping().await.unwrap();
    assert_eq!(
        db.store.active_company_ids().await.unwrap(),
        ["acme", "globex"]
    );
    let context = db.store.job_context("ana").await.unwrap().unwrap();
    assert_eq!(context.company_id, "acme");
    assert_eq!(context.member_email, "ana@acme.test");
    assert!(context.active);
    assert!(context.company.permission_given);
    assert!(context.member.has_recording_seat);
    assert_eq!(context.member.connection, None);
    assert_eq!(
        context
            .credential_refs
            .get("service_account_key_file")
            .map(String::as_str),
        Some("/etc/datacap/acme.json")
    );
    assert!(db.store.job_context("nobody").await.unwrap().is_none());
    // Leaving acme out of the file deactivates it and its members.
    let globex_only = &TENANTS[TENANTS.find("[[companies]]\nid = \"globex\"").unwrap()..];
    let summary = db
        .store
        .apply_tenants(&parse_tenants(globex_only).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(
        (summary.companies_deactivated, summary.members_deactivated),
        (1, 2)
    );
    assert_eq!(db.store.active_company_ids().await.unwrap(), ["globex"]);
    assert!(!db.store.job_context("ana").await.unwrap().unwrap().active);
}

async fn long_histories_classify_on_the_latest_attempts(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    let reason = |report: &datacap_store::StatusReport| icon(report, "ana").email.reason;
    let mut at = NOW;
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.push(attempt("ana", Channel::Email, Outcome::Success, at));
        at += Duration::minutes(1);
    }
    for _ in 0..2 {
        batch.push(attempt("ana", Channel::Email, Outcome::RateLimited, at));
        at += Duration::minutes(1);
    }
    db.store
        .record_attempts(&batch, at, &options)
        .await
        .unwrap();
    // Two transients after a success: still importing.
    assert_eq!(
        reason(&db.store.status(None).await.unwrap()),
        Reason::Importing
    );
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::NetworkError, at),
            at,
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        reason(&db.store.status(None).await.unwrap()),
        Reason::TechnicalFailure
    );
    at += Duration::minutes(1);
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::GrantInvalid, at),
            at,
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        reason(&db.store.status(None).await.unwrap()),
        Reason::MemberConnectionInvalid
    );
    at += Duration::minutes(1);
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, at),
            at,
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        reason(&db.store.status(None).await.unwrap()),
        Reason::Importing
    );
}

// ---------------------------------------------------------------------------------------
// banners kept by delta

/// Two companies of `count` members each, every third member missing its recording seat
/// (so the seat banner is there too).
async fn two_companies(backend: Backend, count: usize) -> TestDb {
    let db = TestDb::new(backend).await;
    db.store
        .apply_tenants(
            &parse_tenants(&two_companies_text(count)).expect("tenants"),
            NOW,
        )
        .await
        .expect("apply");
    db
}

/// The tenants file of [`two_companies`].
fn two_companies_text(count: usize) -> String {
    let mut text = String::new();
    for (company, provider) in [("north", "google_workspace"), ("south", "microsoft_365")] {
        text.push_str(&format!(
            "[[companies]]\nid = \"{company}\"\nprovider = \"{provider}\"\nconnection_mode = \"company_wide\"\nsettings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n"
        ));
        for i in 0..count {
            let seat = i % 3 != 0;
            text.push_str(&format!(
                "[[companies.members]]\nid = \"{company}-{i:03}\"\nemail = \"m{i}@{company}.test\"\nseat = {seat}\nrecording_enabled = true\n"
            ));
        }
    }
    text
}

/// Every outcome an attempt can have, transient ones twice so runs of them happen.
const OUTCOMES: [Outcome; 11] = [
    Outcome::Success,
    Outcome::Success,
    Outcome::NotAuthorized,
    Outcome::GrantInvalid,
    Outcome::AccessDenied,
    Outcome::MailboxUnavailable,
    Outcome::CredentialRejected,
    Outcome::ProviderError,
    Outcome::ProviderError,
    Outcome::RateLimited,
    Outcome::NetworkError,
];

/// A batch of attempts drawn from `seed` (a small linear congruential generator: the
/// same batches on both backends), members of both companies mixed.
fn random_batch(
    seed: &mut u64,
    size: usize,
    members: usize,
    at: OffsetDateTime,
) -> Vec<AttemptRecord> {
    let mut next = |bound: usize| {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(*seed >> 33).unwrap_or(0) % bound
    };
    (0..size)
        .map(|n| {
            let company = if next(2) == 0 { "north" } else { "south" };
            let member = format!("{company}-{:03}", next(members));
            let channel = if next(2) == 0 {
                Channel::Email
            } else {
                Channel::Calendar
            };
            let outcome = OUTCOMES[next(OUTCOMES.len())];
            let finished = at + Duration::milliseconds(i64::try_from(n).unwrap_or(0));
            attempt(&member, channel, outcome, finished)
        })
        .collect()
}

/// Every active company's banners as (company, code, count), in display order.
async fn banner_counts(store: &Store) -> Vec<(String, String, u32)> {
    store
        .status(None)
        .await
        .expect("status")
        .companies
        .iter()
        .flat_map(|company| {
            company.banners.iter().map(|banner| {
                (
                    company.id.clone(),
                    banner.code.as_str().to_owned(),
                    banner.count,
                )
            })
        })
        .collect()
}

async fn batched_writes_keep_banners_equal_to_a_full_recount(backend: Backend) {
    let db = two_companies(backend, 30).await;
    let mut seed = 7;
    let mut now = NOW;
    for round in 0..12 {
        for _ in 0..3 {
            now += Duration::seconds(10);
            let batch = random_batch(&mut seed, 25, 30, now - Duration::seconds(5));
            db.store
                .record_attempts(&batch, now, &WriteOptions::default())
                .await
                .expect("record batch");
        }
        let kept = banner_counts(&db.store).await;
        for company in ["north", "south"] {
            db.store
                .recompute_company(company, now)
                .await
                .expect("recount");
        }
        let recounted = banner_counts(&db.store).await;
        assert_eq!(
            kept, recounted,
            "banners after round {round} differ from a full recount"
        );
        // The batches really moved banners around, beyond the seat banner.
        if round == 11 {
            assert!(
                kept.iter()
                    .any(|(_, code, _)| code == "members_technical_problem"),
                "{kept:?}"
            );
            assert!(
                kept.iter()
                    .any(|(_, code, _)| code == "members_seat_missing")
            );
        }
    }
}

/// Runs `call` until it succeeds. Only SQLite may answer busy (another handle holds the
/// write lock past the busy timeout, which a loaded machine may see; nothing was
/// written), and then the call is retried; any other error, a PostgreSQL deadlock
/// included, fails the test.
async fn retry_sqlite_busy<T, F, Fut>(backend: Backend, conflicts: &mut u32, what: &str, call: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match call().await {
            Ok(_) => return,
            Err(error) if error.is_conflict() && matches!(backend, Backend::Sqlite) => {
                *conflicts += 1;
                assert!(*conflicts < 50, "sqlite stays busy: {error}");
            }
            Err(error) => panic!("{what} failed: {error}"),
        }
    }
}

async fn concurrent_writers_of_shared_companies_never_deadlock(backend: Backend) {
    let db = two_companies(backend, 20).await;
    // Two handles as two replicas would have, each with several writers at once.
    let second = Store::connect(&db.url, StoreOptions::default())
        .await
        .expect("second store");
    let now = NOW + Duration::minutes(1);
    let mut writers = Vec::new();
    for writer in 0..6_u64 {
        let store = if writer % 2 == 0 {
            db.store.clone()
        } else {
            second.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut seed = writer + 1;
            let mut conflicts = 0_u32;
            for _ in 0..15 {
                let batch = random_batch(&mut seed, 12, 20, now - Duration::seconds(30));
                let options = WriteOptions::default();
                let write = || store.record_attempts(&batch, now, &options);
                retry_sqlite_busy(backend, &mut conflicts, "concurrent write", write).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    second.close().await;
    let kept = banner_counts(&db.store).await;
    for company in ["north", "south"] {
        db.store
            .recompute_company(company, now)
            .await
            .expect("recount");
    }
    assert_eq!(kept, banner_counts(&db.store).await);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts").await,
        6 * 15 * 12
    );
}

async fn apply_while_attempts_are_written_never_deadlocks(backend: Backend) {
    let db = two_companies(backend, 20).await;
    let second = Store::connect(&db.url, StoreOptions::default())
        .await
        .expect("second store");
    let now = NOW + Duration::minutes(1);
    let tenants = parse_tenants(&two_companies_text(20)).expect("tenants");
    // `datacap apply` on one replica while another's writers record attempts for the
    // same companies' members: apply must lock in the writers' order (members, then
    // companies), or PostgreSQL finds a deadlock and aborts one side.
    let applier = {
        let store = second.clone();
        tokio::spawn(async move {
            let mut conflicts = 0_u32;
            for _ in 0..12 {
                let apply = || store.apply_tenants(&tenants, now);
                retry_sqlite_busy(backend, &mut conflicts, "apply beside writers", apply).await;
            }
        })
    };
    let mut writers = Vec::new();
    for writer in 0..4_u64 {
        let store = db.store.clone();
        writers.push(tokio::spawn(async move {
            let mut seed = writer + 11;
            let mut conflicts = 0_u32;
            for _ in 0..12 {
                let batch = random_batch(&mut seed, 10, 20, now - Duration::seconds(30));
                let options = WriteOptions::default();
                let write = || store.record_attempts(&batch, now, &options);
                retry_sqlite_busy(backend, &mut conflicts, "write beside apply", write).await;
            }
        }));
    }
    applier.await.expect("applier");
    for writer in writers {
        writer.await.expect("writer");
    }
    second.close().await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts").await,
        4 * 12 * 10
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM members WHERE active").await,
        40
    );
}

async fn concurrent_first_opens_agree_on_the_key_canary(backend: Backend) {
    let db = TestDb::new(backend).await;
    // Several daemons starting at once on a fresh database, each opening its own store
    // and checking the same key: every first use may try to register the canary.
    let opens = 6;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(opens));
    let mut tasks = Vec::new();
    for _ in 0..opens {
        let (url, barrier) = (db.url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url, StoreOptions::default())
                .await
                .expect("connect");
            barrier.wait().await;
            let result = store.verify_key(&key("k1", 1), NOW).await;
            store.close().await;
            result
        }));
    }
    for task in tasks {
        let result = task.await.expect("open");
        assert!(
            result.is_ok(),
            "a simultaneous first open failed: {result:?}"
        );
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM encryption_keys").await, 1);
    db.store
        .verify_key(&key("k1", 1), NOW)
        .await
        .expect("the same key again");
    let error = db
        .store
        .verify_key(&key("k1", 2), NOW)
        .await
        .expect_err("a different key under the same id");
    assert!(
        error.to_string().contains("\"k1\""),
        "the error names the key id: {error}"
    );
}

// ---------------------------------------------------------------------------------------
// the page's reads and the connect flow's pending sign-ins

async fn member_attempts_are_newest_first_bounded_and_scoped(backend: Backend) {
    let db = applied(backend).await;
    let mut written = Vec::new();
    for (minutes, outcome) in [
        (30, Outcome::Success),
        (20, Outcome::ProviderError),
        (10, Outcome::RateLimited),
    ] {
        let record = attempt(
            "ana",
            Channel::Email,
            outcome,
            NOW - Duration::minutes(minutes),
        );
        db.store
            .record_attempt(&record, NOW, &WriteOptions::default())
            .await
            .expect("record");
        written.push(record.attempt_id.to_string());
    }
    let latest = db
        .store
        .member_attempts("acme", "ana", 2)
        .await
        .expect("attempts");
    let ids: Vec<&str> = latest.iter().map(|a| a.attempt_id.as_str()).collect();
    assert_eq!(ids, [written[2].as_str(), written[1].as_str()]);
    assert_eq!(latest[0].outcome, Outcome::RateLimited);
    assert_eq!(latest[0].http_status, Some(503));
    assert_eq!(
        latest[0].provider_error_code.as_deref(),
        Some("backendError")
    );
    assert_eq!(latest[0].finished_at, NOW - Duration::minutes(10));
    assert!(
        db.store
            .member_attempts("acme", "bob", 5)
            .await
            .expect("bob")
            .is_empty()
    );
    assert!(matches!(
        db.store.member_attempts("nope", "ana", 5).await,
        Err(StoreError::UnknownCompany { .. })
    ));
    // A member of another company is not found through this one.
    assert!(matches!(
        db.store.member_attempts("globex", "ana", 5).await,
        Err(StoreError::UnknownMember { .. })
    ));
    let by_id = db
        .store
        .attempts_by_id(&[written[0].clone(), "no-such-attempt".to_owned()])
        .await
        .expect("by id");
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].attempt_id, written[0]);
    assert_eq!(by_id[0].outcome, Outcome::Success);
}

async fn invite_revocations_only_move_forward(backend: Backend) {
    let db = applied(backend).await;
    assert_eq!(
        db.store.invites_not_before("gil").await.expect("read"),
        None
    );
    db.store.revoke_invites("gil", NOW).await.expect("revoke");
    assert_eq!(
        db.store.invites_not_before("gil").await.expect("read"),
        Some(NOW)
    );
    // A later revocation wins, an earlier one never moves the line back.
    let later = NOW + Duration::hours(1);
    db.store.revoke_invites("gil", later).await.expect("later");
    db.store.revoke_invites("gil", NOW).await.expect("earlier");
    assert_eq!(
        db.store.invites_not_before("gil").await.expect("read"),
        Some(later)
    );
    assert!(matches!(
        db.store.revoke_invites("nobody", NOW).await,
        Err(StoreError::UnknownMember { .. })
    ));
}

async fn member_aliases_are_stored_and_replaced_by_apply(backend: Backend) {
    let db = applied(backend).await;
    assert!(
        db.store
            .member_aliases("gil")
            .await
            .expect("read")
            .is_empty()
    );
    let aliased = TENANTS.replace(
        "email = \"gil@globex.test\"",
        "email = \"gil@globex.test\"\naliases = [\"G.Grissom@globex.test\", \"gil@globex-old.test\"]",
    );
    db.store
        .apply_tenants(&parse_tenants(&aliased).expect("aliases parse"), NOW)
        .await
        .expect("apply");
    assert_eq!(
        db.store.member_aliases("gil").await.expect("read"),
        ["G.Grissom@globex.test", "gil@globex-old.test"]
    );
    // The file is the truth: aliases it no longer lists are gone.
    db.store
        .apply_tenants(&parse_tenants(TENANTS).unwrap(), NOW)
        .await
        .expect("apply");
    assert!(
        db.store
            .member_aliases("gil")
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        db.store
            .member_aliases("nobody")
            .await
            .expect("read")
            .is_empty()
    );
}

async fn connect_states_are_single_use_sealed_and_bound(backend: Backend) {
    let db = applied(backend).await;
    let key = key("primary", 7);
    let verifier = SecretString::from("pkce-verifier-secret-0123456789");
    let pending =
        |hash: &'static str, company: &'static str, expires_at| datacap_store::NewConnectState {
            state_hash: hash,
            provider: datacap_core::Provider::Microsoft365,
            company_id: company,
            member_id: "gil",
            verifier: &verifier,
            expires_at,
            invite_issued: NOW.unix_timestamp() - 60,
            invite_expires: (NOW + Duration::days(3)).unix_timestamp(),
        };
    db.store
        .put_connect_state(
            &pending("hash-1", "globex", NOW + Duration::minutes(10)),
            &key,
            NOW,
        )
        .await
        .expect("put");
    let stored = db
        .strings("SELECT state_hash, key_id FROM connect_states")
        .await;
    assert_eq!(
        stored,
        [[Some("hash-1".to_owned()), Some("primary".to_owned())]]
    );
    let taken = db
        .store
        .take_connect_state("hash-1", &key)
        .await
        .expect("take")
        .expect("stored state");
    assert_eq!(taken.company_id, "globex");
    assert_eq!(taken.member_id, "gil");
    assert_eq!(taken.provider, datacap_core::Provider::Microsoft365);
    assert_eq!(taken.verifier.expose_secret(), verifier.expose_secret());
    assert_eq!(taken.expires_at, NOW + Duration::minutes(10));
    // The link it started from comes back for the callback's checks.
    assert_eq!(taken.invite_issued, Some(NOW.unix_timestamp() - 60));
    assert_eq!(
        taken.invite_expires,
        Some((NOW + Duration::days(3)).unix_timestamp())
    );
    assert!(format!("{taken:?}").contains("[redacted]"));
    assert!(!format!("{taken:?}").contains("pkce-verifier"));
    // Single use: a replay finds nothing; an unknown state finds nothing.
    assert!(
        db.store
            .take_connect_state("hash-1", &key)
            .await
            .expect("again")
            .is_none()
    );
    assert!(
        db.store
            .take_connect_state("forged", &key)
            .await
            .expect("forged")
            .is_none()
    );
    // Bound to a member of the named company.
    assert!(matches!(
        db.store
            .put_connect_state(
                &pending("hash-2", "acme", NOW + Duration::minutes(10)),
                &key,
                NOW
            )
            .await,
        Err(StoreError::UnknownMember { .. })
    ));
    // Expired pending sign-ins are dropped by the next put.
    db.store
        .put_connect_state(
            &pending("hash-old", "globex", NOW - Duration::minutes(1)),
            &key,
            NOW - Duration::minutes(20),
        )
        .await
        .expect("put old");
    db.store
        .put_connect_state(
            &pending("hash-3", "globex", NOW + Duration::minutes(10)),
            &key,
            NOW,
        )
        .await
        .expect("put new");
    let left = db
        .strings("SELECT state_hash FROM connect_states ORDER BY state_hash")
        .await;
    assert_eq!(left, [[Some("hash-3".to_owned())]]);
}

// ---------------------------------------------------------------------------------------
// webhooks (issue 19)

/// TENANTS with a webhook endpoint for acme (every event); globex has none.
fn tenants_with_hooks() -> String {
    TENANTS.replace(
        "[[companies.members]]\nid = \"ana\"",
        "[[companies.webhooks]]\nid = \"ops\"\nurl = \"https://hooks.acme.test/in\"\n\
         secret_file = \"/etc/datacap/acme-hook.secret\"\n\n[[companies.members]]\nid = \"ana\"",
    )
}

async fn applied_with_hooks(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    let tenants = parse_tenants(&tenants_with_hooks()).expect("good tenants file");
    assert_eq!(tenants.companies[0].webhooks.len(), 1);
    db.store.apply_tenants(&tenants, NOW).await.expect("apply");
    db
}

/// The outbox's event bodies in order, as (type, icon or banner code, from, to, recovery).
async fn outbox(db: &TestDb) -> Vec<(String, String, String, String, bool)> {
    db.strings("SELECT body FROM webhook_events ORDER BY seq")
        .await
        .into_iter()
        .map(|row| {
            let body: serde_json::Value = serde_json::from_str(row[0].as_deref().unwrap()).unwrap();
            let data = &body["data"];
            let kind = body["type"].as_str().unwrap().to_owned();
            if kind == "member.status_changed" {
                assert_eq!(data["company_id"], "acme");
                assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()));
                assert!(data["resolution"].as_str().is_some_and(|m| !m.is_empty()));
                (
                    kind,
                    format!(
                        "{}:{}",
                        data["member_id"].as_str().unwrap(),
                        data["icon"].as_str().unwrap()
                    ),
                    format!(
                        "{}/{}",
                        data["from"]["color"].as_str().unwrap(),
                        data["from"]["reason"].as_str().unwrap()
                    ),
                    format!(
                        "{}/{}",
                        data["to"]["color"].as_str().unwrap(),
                        data["to"]["reason"].as_str().unwrap()
                    ),
                    data["recovery"].as_bool().unwrap(),
                )
            } else {
                (
                    kind,
                    data["code"].as_str().unwrap().to_owned(),
                    data["from_count"].to_string(),
                    data["to_count"].to_string(),
                    data["change"] == "cleared",
                )
            }
        })
        .collect()
}

fn changed(
    icon: &str,
    from: &str,
    to: &str,
    recovery: bool,
) -> (String, String, String, String, bool) {
    (
        "member.status_changed".into(),
        icon.into(),
        from.into(),
        to.into(),
        recovery,
    )
}

fn banner(code: &str, from: i64, to: i64) -> (String, String, String, String, bool) {
    (
        "company.banner_changed".into(),
        code.into(),
        from.to_string(),
        to.to_string(),
        to == 0,
    )
}

async fn status_changes_write_webhook_events_in_their_transaction(backend: Backend) {
    let db = applied_with_hooks(backend).await;
    // A member's first statuses (apply created them) are not events; the banners the
    // company's first statuses raise are (bob has no recording seat).
    let seat = banner("members_seat_missing", 0, 1);
    assert_eq!(outbox(&db).await, std::slice::from_ref(&seat));
    // A write that fails after the statuses leaves no event either.
    for point in [FailPoint::AfterMemberStatus, FailPoint::AfterBanners] {
        let error = db
            .store
            .record_attempt(
                &attempt("ana", Channel::Email, Outcome::Success, NOW),
                NOW,
                &WriteOptions {
                    fail_at: Some(point),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::InjectedFailure(_)), "{error}");
        assert_eq!(db.count("SELECT COUNT(*) FROM webhook_events").await, 1);
        assert_eq!(db.count("SELECT COUNT(*) FROM webhook_deliveries").await, 1);
    }
    let options = WriteOptions::default();
    let at = |minutes: i64| NOW + Duration::minutes(minutes);
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, at(1)),
            at(1),
            &options,
        )
        .await
        .unwrap();
    for minute in 2..5 {
        db.store
            .record_attempt(
                &attempt("ana", Channel::Email, Outcome::NetworkError, at(minute)),
                at(minute),
                &options,
            )
            .await
            .unwrap();
    }
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, at(5)),
            at(5),
            &options,
        )
        .await
        .unwrap();
    // Globex has no endpoint: its member's changes are history, not events.
    db.store
        .record_attempt(
            &attempt("gil", Channel::Email, Outcome::Success, at(5)),
            at(5),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        outbox(&db).await,
        [
            seat,
            changed(
                "ana:capture",
                "gray/awaiting_first_import",
                "green/importing",
                true
            ),
            changed(
                "ana:email",
                "gray/awaiting_first_import",
                "green/importing",
                true
            ),
            changed(
                "ana:capture",
                "green/importing",
                "red/technical_failure",
                false
            ),
            changed(
                "ana:email",
                "green/importing",
                "red/technical_failure",
                false
            ),
            banner("members_technical_problem", 0, 1),
            changed(
                "ana:capture",
                "red/technical_failure",
                "green/importing",
                true
            ),
            changed(
                "ana:email",
                "red/technical_failure",
                "green/importing",
                true
            ),
            banner("members_technical_problem", 1, 0),
        ]
    );
    // Each event is one delivery to the one endpoint, carrying its attempt id.
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_deliveries").await, 9);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending' AND endpoint_id = 'ops'")
            .await,
        9
    );
    let red = db
        .strings("SELECT body FROM webhook_events ORDER BY seq")
        .await;
    let red: serde_json::Value = serde_json::from_str(red[4][0].as_deref().unwrap()).unwrap();
    let attempt_id = red["data"]["attempt_id"].as_str().unwrap().to_owned();
    let stored = db
        .strings(
            "SELECT last_attempt_id FROM member_status WHERE member_id = 'ana' AND icon = 'email'",
        )
        .await;
    assert_ne!(
        stored[0][0].as_deref(),
        Some(attempt_id.as_str()),
        "the red event names the attempt that turned it red, not the latest"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'network_error'")
            .await,
        3
    );
    assert!(red["id"].as_str().unwrap().starts_with("evt_"));
}

async fn webhook_deliveries_leave_in_order_one_at_a_time_under_a_lease(backend: Backend) {
    let db = applied_with_hooks(backend).await;
    let options = WriteOptions::default();
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, NOW),
            NOW,
            &options,
        )
        .await
        .unwrap();
    let lease = Duration::seconds(30);
    let first = db
        .store
        .claim_webhook_deliveries("a", NOW, lease, 10)
        .await
        .unwrap();
    // Three events wait for the endpoint (the seat banner of apply, ana's capture and
    // email); only its oldest is ever out.
    assert_eq!(first.len(), 1);
    let head = &first[0];
    assert_eq!(
        (head.company_id.as_str(), head.endpoint_id.as_str()),
        ("acme", "ops")
    );
    assert_eq!(head.url, "https://hooks.acme.test/in");
    assert_eq!(
        head.secret,
        SecretRef::File("/etc/datacap/acme-hook.secret".into())
    );
    assert_eq!(head.tries, 0);
    assert!(
        head.body.contains("\"code\":\"members_seat_missing\""),
        "{}",
        head.body
    );
    // Another replica finds nothing to do while the lease lives.
    assert!(
        db.store
            .claim_webhook_deliveries("b", NOW, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let failed = WebhookTry {
        tried_at: NOW,
        http_status: Some(500),
        error: Some("http 500".into()),
        duration: std::time::Duration::from_millis(12),
    };
    let retry_at = NOW + Duration::seconds(5);
    assert!(
        db.store
            .record_webhook_try(head, &failed, DeliveryNext::Retry(retry_at))
            .await
            .unwrap()
    );
    // Not due yet: the endpoint's later event waits behind it.
    assert!(
        db.store
            .claim_webhook_deliveries("b", NOW + Duration::seconds(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = db
        .store
        .claim_webhook_deliveries("b", retry_at, lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].event_id.as_str(), again[0].tries),
        (head.event_id.as_str(), 1)
    );
    // b dies mid-delivery: after its lease, a takes the same head, and b's late answer is
    // not recorded.
    let late = retry_at + lease + Duration::seconds(1);
    let taken = db
        .store
        .claim_webhook_deliveries("a", late, lease, 10)
        .await
        .unwrap();
    assert_eq!(taken[0].event_id, head.event_id);
    let ok = WebhookTry {
        tried_at: late,
        http_status: Some(204),
        error: None,
        duration: std::time::Duration::from_millis(3),
    };
    assert!(
        !db.store
            .record_webhook_try(&again[0], &ok, DeliveryNext::Delivered)
            .await
            .unwrap()
    );
    assert!(
        db.store
            .record_webhook_try(&taken[0], &ok, DeliveryNext::Delivered)
            .await
            .unwrap()
    );
    // Now the next event is the head.
    let next = db
        .store
        .claim_webhook_deliveries("a", late, lease, 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].event_id, head.event_id);
    assert!(
        next[0].body.contains("\"icon\":\"capture\""),
        "{}",
        next[0].body
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_tries").await, 2);
    assert_eq!(
        db.strings("SELECT CAST(http_status AS TEXT), error FROM webhook_tries ORDER BY id")
            .await,
        [
            [Some("500".to_owned()), Some("http 500".to_owned())],
            [Some("204".to_owned()), None]
        ]
        .map(|row| row.to_vec())
    );
    let dead = WebhookTry {
        tried_at: late,
        http_status: None,
        error: Some("connection refused".into()),
        duration: std::time::Duration::from_millis(1),
    };
    assert!(
        db.store
            .record_webhook_try(&next[0], &dead, DeliveryNext::Dead)
            .await
            .unwrap()
    );
    let health = db.store.webhook_endpoints(Some("acme")).await.unwrap();
    assert_eq!(health.len(), 1);
    // The third event (ana's email) still waits.
    assert_eq!((health[0].backlog, health[0].dead), (1, 1));
    assert_eq!(health[0].oldest_pending_since, Some(NOW));
    assert_eq!(health[0].last_success_at, Some(late));
    assert_eq!(health[0].last_failure_at, Some(late));
    assert_eq!(
        health[0].last_failure.as_deref(),
        Some("connection refused")
    );
    assert_eq!(
        db.store.oldest_undelivered_webhook().await.unwrap(),
        Some(NOW)
    );
    // Redelivery: everything dead since a time, then one event by id.
    let later = late + Duration::minutes(1);
    assert_eq!(
        db.store
            .redeliver_dead_since(late, None, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(
        db.store
            .redeliver_dead_since(late, None, later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        db.store
            .redeliver_event(&head.event_id, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.store.webhook_endpoints(None).await.unwrap()[0].backlog,
        3
    );
    // The redelivered older event goes first again, from a fresh run of tries.
    let heads = db
        .store
        .claim_webhook_deliveries("a", later, lease, 10)
        .await
        .unwrap();
    assert_eq!(
        (heads[0].event_id.as_str(), heads[0].tries),
        (head.event_id.as_str(), 0)
    );
    assert_eq!(
        db.store
            .redeliver_event("evt_unknown", later)
            .await
            .unwrap(),
        0
    );
}

async fn apply_adds_updates_and_deactivates_webhook_endpoints(backend: Backend) {
    let db = applied_with_hooks(backend).await;
    assert_eq!(
        db.strings("SELECT company_id, id, url, secret_ref, events FROM webhook_endpoints")
            .await,
        [[
            Some("acme".to_owned()),
            Some("ops".to_owned()),
            Some("https://hooks.acme.test/in".to_owned()),
            Some("{\"secret_file\":\"/etc/datacap/acme-hook.secret\"}".to_owned()),
            Some("[\"member.status_changed\",\"company.banner_changed\"]".to_owned()),
        ]]
        .map(|row| row.to_vec())
    );
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, NOW),
            NOW,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    // Applying again without the endpoint deactivates it: its backlog stays, nothing is
    // claimed for it, and new changes are not queued for it.
    let summary = db
        .store
        .apply_tenants(&parse_tenants(TENANTS).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!((summary.webhooks, summary.webhooks_deactivated), (0, 1));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM webhook_endpoints WHERE active")
            .await,
        0
    );
    let report = db.store.webhook_endpoints(None).await.unwrap();
    assert_eq!((report[0].active, report[0].backlog), (false, 3));
    assert!(
        db.store
            .claim_webhook_deliveries("a", NOW, Duration::seconds(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    db.store
        .record_attempt(
            &attempt(
                "ana",
                Channel::Email,
                Outcome::NetworkError,
                NOW + Duration::hours(2),
            ),
            NOW + Duration::hours(2),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_deliveries").await, 3);
    // Declared again it resumes where it was.
    db.store
        .apply_tenants(&parse_tenants(&tenants_with_hooks()).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(
        db.store
            .claim_webhook_deliveries("a", NOW, Duration::seconds(30), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn status_reports_each_channels_last_successful_import(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    let last = |report: &datacap_store::StatusReport| {
        let ana = icon(report, "ana");
        (
            ana.capture.last_success,
            ana.email.last_success,
            ana.calendar.last_success,
        )
    };
    assert_eq!(
        last(&db.store.status(None).await.unwrap()),
        (None, None, None)
    );
    let mut success = attempt("ana", Channel::Email, Outcome::Success, NOW);
    success.email_items = vec![
        EmailItem {
            provider_id: "m1".into(),
            ..EmailItem::default()
        },
        EmailItem {
            provider_id: "m2".into(),
            ..EmailItem::default()
        },
    ];
    db.store
        .record_attempt(&success, NOW, &options)
        .await
        .unwrap();
    // Failures later keep it; so does retention, which prunes the attempt itself.
    for minutes in 1..5 {
        let at = NOW + Duration::minutes(minutes);
        db.store
            .record_attempt(
                &attempt("ana", Channel::Email, Outcome::ProviderError, at),
                at,
                &options,
            )
            .await
            .unwrap();
    }
    db.store
        .prune_attempts(NOW + Duration::days(40))
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'success'")
            .await,
        0,
        "the success itself was pruned"
    );
    let report = db.store.status(None).await.unwrap();
    let expected = datacap_store::LastSuccess { at: NOW, items: 2 };
    assert_eq!(last(&report), (None, Some(expected), None));
    // The admins' view shows it too.
    assert_eq!(
        db.count("SELECT email_last_success_items FROM member_status_view WHERE member_id = 'ana'")
            .await,
        2
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM member_status_view WHERE member_id = 'ana' \
             AND email_last_success_at IS NOT NULL AND calendar_last_success_at IS NULL"
        )
        .await,
        1
    );
    // An older success written late (a batch out of order) does not move it back; a
    // newer one does, with its own item count.
    let older = attempt(
        "ana",
        Channel::Email,
        Outcome::Success,
        NOW - Duration::hours(1),
    );
    let newer = attempt(
        "ana",
        Channel::Email,
        Outcome::Success,
        NOW + Duration::hours(1),
    );
    db.store
        .record_attempts(&[newer.clone(), older], NOW + Duration::hours(1), &options)
        .await
        .unwrap();
    let report = db.store.status(None).await.unwrap();
    assert_eq!(
        last(&report).1,
        Some(datacap_store::LastSuccess {
            at: NOW + Duration::hours(1),
            items: 0
        })
    );
    let json = serde_json::to_value(&report).unwrap();
    let ana = &json["companies"][0]["members"][0];
    assert_eq!(ana["email"]["last_success"]["items"], 0);
    assert!(ana["email"]["last_success"]["at"].as_str().is_some());
    assert!(ana["capture"]["last_success"].is_null());
}

async fn member_history_is_newest_first_bounded_and_scoped(backend: Backend) {
    let db = applied(backend).await;
    let options = WriteOptions::default();
    for (minutes, outcome) in [(1, Outcome::Success), (2, Outcome::MailboxUnavailable)] {
        let at = NOW + Duration::minutes(minutes);
        db.store
            .record_attempt(&attempt("ana", Channel::Email, outcome, at), at, &options)
            .await
            .unwrap();
    }
    let history = db.store.member_history("acme", "ana", 50).await.unwrap();
    let story: Vec<String> = history
        .iter()
        .map(|c| {
            format!(
                "{} {}->{}",
                c.icon.as_str(),
                c.from_reason.map_or("none", |r| r.as_str()),
                c.to_reason.as_str()
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            "email importing->mailbox_unavailable",
            "capture importing->mailbox_unavailable",
            "email awaiting_first_import->importing",
            "capture awaiting_first_import->importing",
            "calendar none->awaiting_first_import",
            "email none->awaiting_first_import",
            "capture none->awaiting_first_import",
        ]
        .map(str::to_owned),
        "newest first (ties: the later row first)"
    );
    assert_eq!(history[0].to_color, Color::Yellow);
    assert_eq!(history[0].changed_at, NOW + Duration::minutes(2));
    assert_eq!(
        db.store
            .member_history("acme", "ana", 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        db.store.member_history("acme", "gil", 5).await,
        Err(StoreError::UnknownMember { .. })
    ));
    assert!(matches!(
        db.store.member_history("nope", "ana", 5).await,
        Err(StoreError::UnknownCompany { .. })
    ));
}

async fn a_full_resync_drops_the_cursor_and_keeps_the_items(backend: Backend) {
    let db = applied(backend).await;
    let mut record = attempt("ana", Channel::Email, Outcome::Success, NOW);
    record.email_items = vec![EmailItem {
        provider_id: "m1".into(),
        ..EmailItem::default()
    }];
    db.store
        .record_attempt(&record, NOW, &WriteOptions::default())
        .await
        .unwrap();
    let cursors = "SELECT COUNT(*) FROM sync_state WHERE member_id = 'ana' AND cursor IS NOT NULL";
    assert_eq!(db.count(cursors).await, 1);
    // A plain re-poll keeps the cursor; a full one drops it, for that channel only.
    db.store.make_due("ana", None, NOW).await.unwrap();
    assert_eq!(db.count(cursors).await, 1);
    db.store
        .make_due_full("ana", Some(Channel::Calendar), NOW)
        .await
        .unwrap();
    assert_eq!(db.count(cursors).await, 1);
    let report = db
        .store
        .make_due_full("ana", Some(Channel::Email), NOW)
        .await
        .unwrap();
    assert_eq!(report.made_due, 1);
    assert_eq!(db.count(cursors).await, 0);
    let jobs = db
        .store
        .claim_due("w", NOW, Duration::minutes(2), 100)
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|job| job.context.member_id == "ana" && job.channel == Channel::Email)
        .expect("due now");
    assert_eq!(job.cursor, None, "the next poll is a full pass");
    // The full pass brings the same item again: still one row.
    let mut again = attempt(
        "ana",
        Channel::Email,
        Outcome::Success,
        NOW + Duration::minutes(1),
    );
    again.email_items = record.email_items.clone();
    again.lease_owner = Some("w".into());
    db.store
        .record_attempt(&again, NOW + Duration::minutes(1), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM email_items WHERE member_id = 'ana'")
            .await,
        1
    );
    assert_eq!(db.count(cursors).await, 1);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

conformance!(
    apply_good_file_sets_up_companies_members_and_statuses,
    apply_bad_write_leaves_nothing,
    apply_is_idempotent,
    apply_deactivates_absent_members_and_keeps_history,
    two_claimers_never_get_the_same_job,
    claims_take_turns_across_companies,
    expired_leases_are_reclaimed,
    oldest_waiting_due_job_skips_live_leases_and_future_jobs,
    attempt_write_releases_lease_and_advances_cursor,
    attempts_drive_statuses_history_and_banners,
    injected_failure_mid_write_leaves_nothing,
    recompute_company_notices_stalled_imports,
    recompute_stale_recomputes_only_what_time_changed,
    postgres_settings_and_the_queue_vacuum,
    refresh_tokens_are_sealed_per_row,
    dead_grants_are_marked_invalid_by_the_attempt_that_met_them,
    rotate_key_reseals_every_secret_in_one_transaction,
    make_due_polls_a_member_again_unless_leased,
    a_grant_stored_during_a_no_grant_skip_keeps_the_job_due,
    retention_prunes_old_attempts_and_keeps_status,
    admin_views_show_icons_and_banners,
    status_json_has_the_design_shape,
    job_context_reads_settings_and_credential_references,
    long_histories_classify_on_the_latest_attempts,
    batched_writes_keep_banners_equal_to_a_full_recount,
    concurrent_writers_of_shared_companies_never_deadlock,
    apply_while_attempts_are_written_never_deadlocks,
    concurrent_first_opens_agree_on_the_key_canary,
    member_attempts_are_newest_first_bounded_and_scoped,
    connect_states_are_single_use_sealed_and_bound,
    invite_revocations_only_move_forward,
    member_aliases_are_stored_and_replaced_by_apply,
    status_changes_write_webhook_events_in_their_transaction,
    webhook_deliveries_leave_in_order_one_at_a_time_under_a_lease,
    apply_adds_updates_and_deactivates_webhook_endpoints,
    status_reports_each_channels_last_successful_import,
    member_history_is_newest_first_bounded_and_scoped,
    a_full_resync_drops_the_cursor_and_keeps_the_items,
    settled_webhook_events_are_pruned_and_pending_ones_kept,
);

/// The retention pass prunes webhook events older than its cutoff once no delivery waits
/// for them (delivered or dead), with their deliveries and tries; a pending event stays
/// whatever its age, and nothing newer than the cutoff goes.
async fn settled_webhook_events_are_pruned_and_pending_ones_kept(backend: Backend) {
    let db = applied_with_hooks(backend).await;
    db.store
        .record_attempt(
            &attempt("ana", Channel::Email, Outcome::Success, NOW),
            NOW,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let events = "SELECT COUNT(*) FROM webhook_events";
    let written = db.count(events).await;
    assert!(written >= 2, "{written} events");
    // Deliver the oldest one.
    let head = db
        .store
        .claim_webhook_deliveries("a", NOW, Duration::seconds(30), 10)
        .await
        .unwrap()
        .remove(0);
    let ok = WebhookTry {
        tried_at: NOW,
        http_status: Some(204),
        error: None,
        duration: std::time::Duration::from_millis(3),
    };
    assert!(
        db.store
            .record_webhook_try(&head, &ok, DeliveryNext::Delivered)
            .await
            .unwrap()
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_tries").await, 1);
    // A cutoff before the events: nothing goes.
    assert_eq!(
        db.store
            .prune_webhooks(NOW - Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(db.count(events).await, written);
    // A cutoff after them: the delivered one goes with its delivery and try; the pending
    // ones stay.
    assert_eq!(
        db.store
            .prune_webhooks(NOW + Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.count(events).await, written - 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_tries").await, 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM webhook_deliveries WHERE state <> 'pending'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM webhook_deliveries").await,
        written - 1,
        "every pending delivery kept"
    );
}
