//! Faults of our own and of the providers, with the real `datacap run` daemon, the sim and
//! both databases: PostgreSQL going away mid-run (every connection cut and new ones refused
//! by a TCP proxy in front of it, then back), a real PostgreSQL server stopped
//! (`pg_ctl stop -m immediate`) and started again under a running daemon (a private cluster
//! of the test's own, never the shared server), SQLite busy (another process holding the write
//! lock for seconds), a 429 storm with Retry-After across a tenant (the sim's request count
//! against the tenant limit), a slow tenant (2 s per answer) beside a fast one, and
//! connections reset mid-body. None of them may turn a member red before the threshold,
//! crash the daemon, or keep it from resuming once the fault is gone.

// The figures a run reaches, and why a test could not run here, are printed for the reader.
#![allow(clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// A TCP proxy to PostgreSQL that the test can cut (every open connection dropped, new
/// ones closed at once, as while the server restarts) and restore.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (up, stop, open) = (proxy.up.clone(), proxy.stop.clone(), proxy.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut list = open.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        proxy
    }

    /// Drops every connection and refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Healthy members of [`SCENARIO`] (the others fail on purpose).
const HEALTHY: &str = "('admin', 'ada', 'megan')";

fn ready(daemon: &Daemon) -> Option<u16> {
    daemon.get("/readyz").map(|(status, _)| status)
}

fn attempts(h: &Harness) -> i64 {
    h.count("SELECT COUNT(*) FROM import_attempts")
}

/// Waits until the daemon is ready and has written a first round.
fn first_round(h: &Harness, daemon: &Daemon) {
    eventually("the daemon is ready", Duration::from_secs(60), || {
        ready(daemon) == Some(200)
    });
    eventually("a first round is written", Duration::from_secs(60), || {
        attempts(h) >= 20
    });
}

/// After a fault of our own: the daemon resumes writing, every healthy member is green,
/// and none ever turned red.
fn resumes_without_red(h: &Harness, daemon: &mut Daemon, what: &str) {
    let before = attempts(h);
    eventually(
        &format!("{what}: the daemon resumes"),
        Duration::from_secs(60),
        || ready(daemon) == Some(200) && attempts(h) > before + 5,
    );
    eventually(
        &format!("{what}: every healthy member is green"),
        Duration::from_secs(60),
        || {
            h.count(&format!(
                "SELECT COUNT(*) FROM member_status WHERE member_id IN {HEALTHY} \
                 AND icon IN ('email', 'calendar') AND color <> 'green'"
            )) == 0
        },
    );
    assert_eq!(
        h.count(&format!(
            "SELECT COUNT(*) FROM status_changes WHERE member_id IN {HEALTHY} AND to_color = 'red'"
        )),
        0,
        "{what}: a healthy member turned red because of our own fault"
    );
    assert!(
        daemon.alive(),
        "{what}: the daemon exited\n{}",
        tail(&daemon.logs())
    );
    assert!(
        !daemon.logs().contains("panicked"),
        "{}",
        tail(&daemon.logs())
    );
}

#[test]
fn postgres_going_away_mid_run_is_not_a_member_failure() {
    let h = Harness::new(SCENARIO, true);
    h.apply();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let database = &h.database.as_ref().unwrap().name;
    let url = format!("postgres://postgres@{}/{database}", proxy.addr);
    let mut daemon = h.daemon(
        "pg-away",
        &[
            ("DATACAP_DATABASE__URL", url.as_str()),
            ("DATACAP_WORKER__LEASE", "3s"),
            ("DATACAP_WORKER__HEARTBEAT", "1s"),
        ],
    );
    first_round(&h, &daemon);
    for round in 1..=2 {
        // The server restarts: every connection drops, new ones are refused for a while.
        proxy.cut();
        eventually(
            &format!("outage {round}: the daemon reports not ready"),
            Duration::from_secs(60),
            || ready(&daemon) == Some(503),
        );
        assert_eq!(daemon.get("/healthz").unwrap().0, 200, "alive all along");
        proxy.restore();
        resumes_without_red(&h, &mut daemon, &format!("outage {round}"));
    }
    assert!(
        daemon.logs().contains("failure of our own"),
        "{}",
        tail(&daemon.logs())
    );
}

/// A private PostgreSQL cluster of the test's own (initdb in a temp dir, a free port,
/// trust auth, run as the `postgres` user through `runuser`), so the test can stop and
/// start a real server without touching the shared one. Stopped and deleted on drop,
/// whatever happened.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts the cluster, or says why this machine cannot.
    fn start() -> Result<Cluster, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|error| format!("cannot run `id -u`: {error}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("a private PostgreSQL cluster needs root (to run it as the \
                        `postgres` user with runuser)"
                .to_owned());
        }
        let bin = newest_postgres_bin().ok_or("no /usr/lib/postgresql/<version>/bin/initdb")?;
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .map_err(|error| format!("chown: {error}"))?;
        if !chown.success() {
            return Err("cannot hand the cluster's directory to the postgres user".to_owned());
        }
        let port = free_port().port();
        let cluster = Cluster { dir, bin, port };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "--auth=trust", "-U", "postgres", "-N"],
        )?;
        cluster.server_start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of the server's programs as `postgres`.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .map_err(|error| format!("runuser {program}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn server_start(&self) -> Result<(), String> {
        let dir = self.dir.path().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// Stops the server at once, as a crash or a power cut would (no clean shutdown).
    fn server_stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Already stopped is fine; the temp dir goes after this.
        let _ = self.server_stop();
    }
}

/// The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql.
fn newest_postgres_bin() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            Path::new(&bin.join("initdb"))
                .exists()
                .then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

#[test]
fn a_real_postgres_restart_mid_run_is_not_a_member_failure() {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI must run the PostgreSQL restart test (as root): {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: the PostgreSQL restart test cannot run here: {reason}");
            return;
        }
    };
    let mut h = Harness::new(SCENARIO, false);
    // Every command, the daemon and the test's own counts use the private cluster.
    h.env[0].1 = cluster.url();
    h.apply();
    let mut daemon = h.daemon(
        "pg-restart",
        &[
            ("DATACAP_WORKER__LEASE", "3s"),
            ("DATACAP_WORKER__HEARTBEAT", "1s"),
        ],
    );
    first_round(&h, &daemon);
    cluster.server_stop().unwrap();
    eventually(
        "the server is down: the daemon reports not ready",
        Duration::from_secs(30),
        || ready(&daemon) == Some(503),
    );
    assert_eq!(daemon.get("/healthz").unwrap().0, 200, "alive all along");
    // Down for a few seconds of claims, heartbeats and writes that fail.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ready(&daemon), Some(503), "{}", tail(&daemon.logs()));
    cluster.server_start().unwrap();
    let back = Instant::now();
    let before = attempts(&h);
    eventually(
        "the server is back: the daemon is ready and writes attempts again",
        Duration::from_secs(30),
        || ready(&daemon) == Some(200) && attempts(&h) > before,
    );
    let resumed = back.elapsed();
    assert!(
        resumed < Duration::from_secs(20),
        "resumed {resumed:?} after the server came back"
    );
    resumes_without_red(&h, &mut daemon, "restart");
    assert!(
        daemon.logs().contains("failure of our own"),
        "{}",
        tail(&daemon.logs())
    );
    eprintln!("resumed {resumed:?} after the server came back");
}

#[test]
fn sqlite_busy_for_seconds_is_not_a_member_failure() {
    let h = Harness::new(SCENARIO, false);
    h.apply();
    let mut daemon = h.daemon("busy", &[]);
    first_round(&h, &daemon);
    // Another process (this test) takes the write lock and keeps it for 8 s.
    let url = h.database_url().to_owned();
    block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut connection)
            .await
            .unwrap();
        sqlx::query("UPDATE sync_state SET next_due_at = next_due_at")
            .execute(&mut connection)
            .await
            .unwrap();
        let held = Instant::now();
        while held.elapsed() < Duration::from_secs(8) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(daemon.alive(), "the daemon exited while the file was busy");
        sqlx::query("COMMIT")
            .execute(&mut connection)
            .await
            .unwrap();
    });
    resumes_without_red(&h, &mut daemon, "SQLite busy");
}

/// Provider-side scenario: `google` and `microsoft` members with a little data each.
const DATA: &str = "messages = 3\nevents = 2\n";

#[test]
fn a_429_storm_with_retry_after_stays_under_the_tenant_limit_and_turns_nobody_red() {
    let members = ids("s", 12);
    let h = Harness::two_tenants(&members, &[], DATA, DATA, false);
    let (rate, burst) = (5.0, 5.0);
    let mut daemon = h.daemon(
        "storm",
        &[
            ("DATACAP_WORKER__TENANT_RATE_PER_SECOND", "5"),
            ("DATACAP_WORKER__TENANT_BURST", "5"),
        ],
    );
    eventually("every member is imported", Duration::from_secs(120), || {
        h.count(
            "SELECT COUNT(*) FROM member_status WHERE icon IN ('email', 'calendar') \
             AND reason = 'importing'",
        ) == 24
    });
    // The tenant's next 24 calls answer 429 Retry-After: 2 (as many as it has jobs).
    let storm = 24;
    let fired_before = h.sim_faults_fired("RateLimited");
    h.control(
        "faults",
        json!({"tenant": "globex", "fault": "rate_limited", "retry_after": 2, "times": storm}),
    );
    let start_requests = h.sim_requests();
    let started = Instant::now();
    eventually("the storm has passed", Duration::from_secs(120), || {
        h.sim_faults_fired("RateLimited") - fired_before >= storm
    });
    // A short Retry-After is waited out inside the attempt (twice at most, google.md:
    // "honour Retry-After"), so the storm's 429s end far fewer attempts than they are; each
    // job alone would need nine in a row to turn red.
    let throttled = h.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'rate_limited'");
    assert!(
        throttled < i64::try_from(storm).unwrap(),
        "{throttled} attempts ended rate_limited for {storm} 429s: none was retried"
    );
    // And the tenant is polled normally again afterwards.
    let after_storm = h.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'success'");
    eventually("imports resume", Duration::from_secs(120), || {
        h.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'success'")
            >= after_storm + 24
    });
    let requests = (h.sim_requests() - start_requests) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        requests <= burst + rate * elapsed + 1.0,
        "{requests} requests in {elapsed:.1} s: over the tenant limit of {rate}/s (burst {burst})"
    );
    let reds = h.texts(
        "SELECT member_id || ' ' || channel || ': ' || outcome || ' at ' || started_at \
         FROM import_attempts WHERE (member_id, channel) IN \
         (SELECT member_id, icon FROM status_changes WHERE to_color = 'red') \
         ORDER BY member_id, channel, started_at",
    );
    assert_eq!(
        h.turned_red(),
        0,
        "a short storm turned a member red; their attempts:\n{}",
        reds.join("\n")
    );
    assert!(daemon.alive(), "{}", tail(&daemon.logs()));
}

#[test]
fn a_slow_tenant_never_starves_another() {
    let (google, microsoft) = (ids("w", 8), ids("f", 4));
    let h = Harness::two_tenants(
        &google,
        &microsoft,
        &format!(
            "{DATA}[[tenant.user.fault]]\nfault = \"latency\"\nlatency_ms = 2000\nendpoint = \"any\"\n"
        ),
        DATA,
        false,
    );
    let mut daemon = h.daemon("slow", &[("DATACAP_WORKER__CONCURRENCY", "4")]);
    eventually(
        "the fast tenant is imported",
        Duration::from_secs(60),
        || {
            h.count(
                "SELECT COUNT(*) FROM member_status WHERE member_id LIKE 'f%' \
             AND icon IN ('email', 'calendar') AND reason = 'importing'",
            ) == 8
        },
    );
    // Over the next 30 s the fast tenant's jobs (due every second) keep being polled
    // while the slow tenant's attempts take seconds each.
    let window = Instant::now();
    let fast = "SELECT COUNT(*) FROM import_attempts WHERE member_id LIKE 'f%'";
    let before = h.count(fast);
    while window.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let polled = h.count(fast) - before;
    eprintln!("the fast tenant's 8 jobs were polled {polled} times in 30 s");
    assert!(
        polled >= 8 * 5,
        "the fast tenant's 8 jobs were polled {polled} times in 30 s"
    );
    assert!(
        h.count("SELECT COUNT(*) FROM import_attempts WHERE member_id LIKE 'w%'") > 0,
        "the slow tenant is polled too"
    );
    assert_eq!(h.turned_red(), 0);
    assert!(daemon.alive(), "{}", tail(&daemon.logs()));
}

#[test]
fn connections_reset_mid_body_are_transient_and_never_red_before_the_threshold() {
    let (google, microsoft) = (ids("r", 3), ids("m", 3));
    // Two resets in a row for each member (below the default threshold of three).
    let reset = format!("{DATA}[[tenant.user.fault]]\nfault = \"connection_reset\"\ntimes = 2\n");
    let h = Harness::two_tenants(&google, &microsoft, &reset, &reset, false);
    let mut daemon = h.daemon("reset", &[]);
    eventually("every member is imported", Duration::from_secs(90), || {
        h.count(
            "SELECT COUNT(*) FROM member_status WHERE icon IN ('email', 'calendar') \
             AND reason = 'importing'",
        ) == 12
    });
    assert!(
        h.count("SELECT COUNT(*) FROM import_attempts WHERE outcome = 'network_error'") >= 6,
        "the resets were recorded as network errors"
    );
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM import_attempts WHERE outcome NOT IN ('success', 'network_error')"
        ),
        0,
        "a reset mid-body is a network error, nothing else"
    );
    assert_eq!(h.turned_red(), 0, "red before the threshold");
    assert!(daemon.alive(), "{}", tail(&daemon.logs()));
    assert!(
        !daemon.logs().contains("panicked"),
        "{}",
        tail(&daemon.logs())
    );
}

/// Attempt start times (ms since the epoch) of `member`'s `channel` since `since_ms`
/// (SQLite).
fn attempt_times(h: &Harness, member: &str, channel: &str, since_ms: i64) -> Vec<i64> {
    h.texts(&format!(
        "SELECT CAST(CAST((julianday(started_at) - 2440587.5) * 86400000 AS INTEGER) AS TEXT) \
         FROM import_attempts WHERE member_id = '{member}' AND channel = '{channel}' \
         AND (julianday(started_at) - 2440587.5) * 86400000 >= {since_ms} ORDER BY started_at"
    ))
    .iter()
    .map(|text| text.parse().unwrap())
    .collect()
}

/// The longest wait between `since_ms`, each attempt and `until_ms`.
fn longest_gap(since_ms: i64, times: &[i64], until_ms: i64) -> i64 {
    let mut points = vec![since_ms];
    points.extend_from_slice(times);
    points.push(until_ms);
    points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

/// Issue 21 §1: one hot mailbox throttled on every call holds back what the provider's
/// limit covers and nobody else of the tenant: the others keep their one-second schedule.
/// Asserted on the attempts' start times; before, the company's pause held every member
/// for the whole Retry-After (20 s).
fn throttled_mailbox(google: bool) {
    let members = ids(if google { "w" } else { "f" }, 4);
    let hot = &members[0];
    let (h, fault, scope) = if google {
        // Gmail's per-user concurrency limit: that member's Gmail only.
        let h = Harness::two_tenants(&members, &[], DATA, DATA, false);
        let fault = json!({"tenant": "globex", "user": format!("{hot}@globex.example"),
            "fault": "too_many_concurrent_requests", "endpoint": "gmail", "retry_after": 20,
            "times": 100000});
        (h, fault, "google_workspace\",scope=\"member_channel")
    } else {
        // Outlook's per app and mailbox limit ("MailboxConcurrency"): both of its channels.
        let h = Harness::two_tenants(&[], &members, DATA, DATA, false);
        let fault = json!({"tenant": "fabrikam", "user": format!("{hot}@fabrikam.example"),
            "fault": "application_throttled", "endpoint": "graph_mail", "retry_after": 20,
            "times": 100000});
        (h, fault, "microsoft_365\",scope=\"mailbox")
    };
    let now_ms =
        || -> i64 { h.count("SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)") };
    let daemon = h.daemon("hot", &[]);
    eventually("every member is imported", Duration::from_secs(120), || {
        h.count(
            "SELECT COUNT(*) FROM member_status WHERE icon IN ('email', 'calendar') \
             AND reason = 'importing'",
        ) == 8
    });
    // The hot member's mail answers 429 Retry-After: 20 on every call; its calendar
    // answers normally.
    let fired_before = h.sim_faults_fired(if google {
        "TooManyConcurrentRequests"
    } else {
        "ApplicationThrottled"
    });
    h.control("faults", fault);
    let since = now_ms();
    eventually(
        "the others are polled for 30 s",
        Duration::from_secs(120),
        || now_ms() - since >= 30_000,
    );
    let until = now_ms();
    for member in &members[1..] {
        for channel in ["email", "calendar"] {
            let times = attempt_times(&h, member, channel, since);
            let gap = longest_gap(since, &times, until);
            assert!(
                gap < 10_000,
                "{member}'s {channel} waited {gap} ms between attempts while {hot} was \
                 throttled (due every second): {times:?}\n{}",
                tail(&daemon.logs())
            );
        }
    }
    let calendar = attempt_times(&h, hot, "calendar", since);
    let calendar_gap = longest_gap(since, &calendar, until);
    if google {
        // Gmail's per-user quota is not Calendar's: the calendar kept its schedule.
        assert!(
            calendar_gap < 10_000,
            "{hot}'s calendar waited {calendar_gap} ms for its Gmail quota: {calendar:?}"
        );
    } else {
        // The mailbox's limit is both channels': the calendar waited out the pause too.
        assert!(
            calendar_gap >= 15_000,
            "{hot}'s calendar was not held back by its mailbox's 20 s pause: {calendar:?}"
        );
    }
    let email = attempt_times(&h, hot, "email", since);
    assert!(
        longest_gap(since, &email, until) >= 15_000,
        "{hot}'s mail was not held back by its own 20 s pause: {email:?}"
    );
    assert!(
        h.count(&format!(
            "SELECT COUNT(*) FROM import_attempts WHERE member_id = '{hot}' \
             AND channel = 'email' AND outcome = 'rate_limited'"
        )) >= 1,
        "{hot}'s mail ended no attempt rate_limited"
    );
    assert!(
        h.sim_faults_fired(if google {
            "TooManyConcurrentRequests"
        } else {
            "ApplicationThrottled"
        }) > fired_before
    );
    let metrics = daemon.get("/metrics").expect("metrics").1;
    assert!(
        metric(
            &metrics,
            &format!("datacap_throttle_pauses_total{{provider=\"{scope}\"}}")
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
}

#[test]
fn a_throttled_outlook_mailbox_holds_back_only_its_mailbox() {
    throttled_mailbox(false);
}

#[test]
fn a_throttled_gmail_user_holds_back_only_its_gmail() {
    throttled_mailbox(true);
}

/// Issue 21 §3, end to end: the Directory admin is refused by Directory (the subject is no
/// Directory admin: "Not Authorized to access this resource/api"), Gmail and Calendar
/// work. `apply` → `run --once` → `status`: every member is green, and the refusal is
/// logged once for the company with the provider's answer, not once per attempt.
fn refused_directory_check(postgres: bool) {
    let members = ids("g", 3);
    let h = Harness::two_tenants(&members, &[], DATA, DATA, postgres);
    h.control(
        "faults",
        json!({"tenant": "globex", "user": "g00@globex.example",
               "fault": "directory_not_authorized", "times": 1000}),
    );
    let (_, logs) = h.run_once_polling(6);
    let status = h.status();
    let why = ": a refused Directory check must not block working imports";
    assert_reasons(&status, "globex", &members, ("importing", "importing"), why);
    assert!(
        h.sim_faults_fired("DirectoryNotAuthorized") >= 2,
        "the check was refused"
    );
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("optional check refused"))
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "logged once per company:\n{}",
        refusals.join("\n")
    );
    assert!(
        refusals[0].contains("google_directory") && refusals[0].contains("http_status=403"),
        "{}",
        refusals[0]
    );
}

#[test]
fn a_refused_directory_check_turns_nobody_red_on_sqlite() {
    refused_directory_check(false);
}

#[test]
fn a_refused_directory_check_turns_nobody_red_on_postgres() {
    refused_directory_check(true);
}

/// Issue 21 §2: `run --once` polls everything that was due when it started. One worker
/// slot, and the tenant's first token request answers 429 AADSTS90055 with Retry-After:
/// 4 (the identity platform throttles per tenant and app): every other job of the tenant
/// is held back by the pause, waits for it and is then polled. With a bound shorter than
/// the pause they are left for the next run, and the summary says why, never "by
/// settings".
#[test]
fn run_once_polls_what_a_pause_held_back() {
    let members = ids("f", 4);
    let h = Harness::two_tenants(&[], &members, DATA, DATA, false);
    let throttle = json!({"tenant": "fabrikam", "fault": "tenant_throttled", "endpoint": "token",
                          "retry_after": 4, "times": 1});
    let one_slot = ("DATACAP_WORKER__CONCURRENCY", "1");

    h.control("faults", throttle.clone());
    let output = h.command(&[one_slot], &["run", "--once"]).output().unwrap();
    let summary = ok(&output);
    assert!(h.sim_faults_fired("TenantThrottled") >= 1, "{summary}");
    assert!(
        summary.starts_with("polled 8 member-channels")
            && summary.contains("not polled: 0 by settings, 0 without a grant, 0 paused"),
        "{summary}\n{}",
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    assert_eq!(
        h.count("SELECT COUNT(DISTINCT member_id || channel) FROM import_attempts"),
        8,
        "every member-channel due at the start has an attempt"
    );

    // The same pause with a bound of one second: what it still holds is counted as such.
    let before = h.count("SELECT COUNT(*) FROM import_attempts");
    h.control("faults", throttle);
    for member in &members {
        h.datacap(&[], &["poll", "--member", member]);
    }
    let short_bound = [one_slot, ("DATACAP_WORKER__ONCE_PAUSE_WAIT", "1s")];
    let output = h
        .command(&short_bound, &["run", "--once"])
        .output()
        .unwrap();
    let summary = ok(&output);
    let polled = h.count("SELECT COUNT(*) FROM import_attempts") - before;
    assert!(
        polled < 8 && summary.contains(&format!("{} paused by the provider", 8 - polled)),
        "{polled} polled: {summary}"
    );
    assert!(summary.contains("0 by settings"), "{summary}");
}

/// Issue 21 §4, end to end: a sample of every class of the published catalogues, each on
/// one member, through `apply` → `run --once` → `status` with the real binary and the sim
/// (whose answers are the providers' catalogue entries): an admin's policy, a missing
/// scope or permission, a missing mailbox (404 variants, including Graph's "Resource could
/// not be discovered."), 5xx and 429-class answers without Retry-After (transient: no
/// colour after one attempt), a dead delegated account; then a tenant-wide credential
/// error (AADSTS7000222) that turns the Microsoft company red and leaves Google alone.
fn catalogue_sample(postgres: bool) {
    let google = ids("g", 8);
    let microsoft = ids("f", 7);
    let h = Harness::two_tenants(&google, &microsoft, DATA, DATA, postgres);
    let fault = |tenant: &str, user: &str, fault: &str, endpoint: &str| {
        let mut body = json!({"tenant": tenant, "user": user, "fault": fault, "times": 1000});
        if !endpoint.is_empty() {
            body["endpoint"] = endpoint.into();
        }
        h.control("faults", body);
    };
    let at = |id: &str, tenant: &str| format!("{id}@{tenant}.example");
    // (member, fault, endpoint, expected email reason, expected calendar reason)
    let google_rows = [
        (
            "g01",
            "google:domainPolicy",
            "gmail",
            "provider_permission_denied",
            "importing",
        ),
        (
            "g02",
            "google:insufficientPermissions",
            "gmail",
            "email_not_authorized",
            "importing",
        ),
        (
            "g03",
            "google:notACalendarUser",
            "calendar",
            "importing",
            "mailbox_unavailable",
        ),
        (
            "g04",
            "google:userRateLimitExceeded",
            "gmail",
            "awaiting_first_import",
            "importing",
        ),
        (
            "g05",
            "server_error",
            "calendar",
            "importing",
            "awaiting_first_import",
        ),
        (
            "g06",
            "google:failedPrecondition",
            "gmail",
            "awaiting_first_import",
            "importing",
        ),
        (
            "g07",
            "invalid_email",
            "token",
            "mailbox_unavailable",
            "mailbox_unavailable",
        ),
    ];
    let microsoft_rows = [
        (
            "f01",
            "graph:MailboxNotEnabledForRESTAPI",
            "",
            "mailbox_unavailable",
            "mailbox_unavailable",
        ),
        (
            "f02",
            "graph:ErrorAccessDenied",
            "",
            "provider_permission_denied",
            "provider_permission_denied",
        ),
        (
            "f03",
            "graph:ResourceNotFound",
            "graph_mail",
            "mailbox_unavailable",
            "importing",
        ),
        (
            "f04",
            "graph:ErrorServerBusy",
            "graph_mail",
            "awaiting_first_import",
            "importing",
        ),
        (
            "f05",
            "graph:UnknownError",
            "graph_calendar",
            "importing",
            "awaiting_first_import",
        ),
        (
            "f06",
            "graph:Authorization_IdentityNotFound",
            "graph_mail",
            "email_not_authorized",
            "importing",
        ),
    ];
    for (member, name, endpoint, ..) in &google_rows {
        fault("globex", &at(member, "globex"), name, endpoint);
    }
    for (member, name, endpoint, ..) in &microsoft_rows {
        fault("fabrikam", &at(member, "fabrikam"), name, endpoint);
    }
    h.run_once_polling(30);
    let status = h.status();
    let mut wrong = Vec::new();
    let rows = google_rows
        .iter()
        .map(|row| ("globex", row))
        .chain(microsoft_rows.iter().map(|row| ("fabrikam", row)))
        .chain([("globex", &("g00", "", "", "importing", "importing"))])
        .chain([("fabrikam", &("f00", "", "", "importing", "importing"))]);
    for (company, (member, name, _, email, calendar)) in rows {
        let got = reasons(&status, company, member);
        if got != ((*email).to_owned(), (*calendar).to_owned()) {
            wrong.push(format!(
                "{company}/{member} ({name}): {got:?}, expected ({email}, {calendar})"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The app's client secret expired (AADSTS7000222, a tenant-wide answer of the token
    // endpoint): every Microsoft member turns red with the credential's reason at the next
    // poll; Google's members are untouched.
    h.control("faults/clear", json!({}));
    h.control(
        "faults",
        json!({"tenant": "fabrikam", "fault": "aadsts:7000222", "times": 1000}),
    );
    for member in microsoft.iter().chain(&google) {
        h.datacap(&[], &["poll", "--member", member]);
    }
    let output = h.command(&[], &["run", "--once"]).output().unwrap();
    ok(&output);
    let status = h.status();
    let invalid = ("app_credential_invalid", "app_credential_invalid");
    assert_reasons(&status, "fabrikam", &microsoft, invalid, "");
    let why = ": its faults are cleared and it is polled again";
    assert_reasons(&status, "globex", &google, ("importing", "importing"), why);
    assert!(
        h.sim_faults_fired("aadsts:7000222") >= 1,
        "the catalogue entry answered"
    );
}

#[test]
fn a_sample_of_every_catalogue_class_reaches_its_icon_on_sqlite() {
    catalogue_sample(false);
}

#[test]
fn a_sample_of_every_catalogue_class_reaches_its_icon_on_postgres() {
    catalogue_sample(true);
}
