//! `datacap run` under systemd, as a process: the readiness protocol on a real
//! `NOTIFY_SOCKET` (a datagram socket in a temp dir, as systemd binds one): `READY=1` once
//! it serves, `RELOADING=1`/`READY=1` around a SIGHUP, `STOPPING=1` on SIGTERM; and the
//! SIGHUP reload itself: a changed log filter takes effect at once, a changed poll
//! interval schedules the next attempts, a changed worker key that needs a restart is
//! named, and a broken file is refused with every problem logged while the daemon keeps
//! serving.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;

/// The next message on `socket` (systemd's side of `NOTIFY_SOCKET`).
fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0_u8; 4096];
    let size = socket
        .recv(&mut buffer)
        .expect("a message on NOTIFY_SOCKET in time");
    String::from_utf8_lossy(&buffer[..size]).into_owned()
}

fn assert_state(message: &str, state: &str) {
    assert!(
        message.lines().any(|line| line == state),
        "expected {state} in {message:?}"
    );
}

/// Sends SIGTERM: the daemon notifies that it is stopping, then exits 0.
fn stop(daemon: &mut Daemon, socket: &UnixDatagram) {
    daemon.signal("-TERM");
    assert_state(&receive(socket), "STOPPING=1");
    let status = daemon.wait(Duration::from_secs(60)).expect("exits");
    assert!(status.success(), "{status:?}\n{}", tail(&daemon.logs()));
}

/// Writes `text` to the config file and sends SIGHUP: the daemon notifies that it is
/// reloading, then ready again.
fn reload(daemon: &Daemon, socket: &UnixDatagram, config: &Path, text: &str) {
    std::fs::write(config, text).unwrap();
    daemon.signal("-HUP");
    assert_state(&receive(socket), "RELOADING=1");
    assert_state(&receive(socket), "READY=1");
}

/// A systemd-side notify socket in `dir`.
fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    (socket, path.display().to_string())
}

/// `datacap [--config FILE] run` with `NOTIFY_SOCKET`, logs to a file; the log level only
/// from the config file when one is given, and without the variables `unset`.
fn start(h: &Harness, notify: &str, config: Option<&Path>, unset: &[&str]) -> Daemon {
    let http = free_port();
    let log = h.dir.path().join("run.log");
    let listen = http.to_string();
    let config_arg = config.map(|path| path.display().to_string());
    let mut args: Vec<&str> = Vec::new();
    if let Some(path) = &config_arg {
        args.extend(["--config", path.as_str()]);
    }
    args.push("run");
    let mut command = h.command(
        &[("DATACAP_HTTP__LISTEN", &listen), ("NOTIFY_SOCKET", notify)],
        &args,
    );
    if config.is_some() {
        command.env_remove("DATACAP_LOG__LEVEL");
    }
    for name in unset {
        command.env_remove(name);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("datacap run starts");
    Daemon { child, log, http }
}

#[test]
fn run_reports_ready_then_stopping_on_the_notify_socket() {
    let h = Harness::new(SCENARIO, false);
    let (socket, path) = notify_socket(h.dir.path());
    let mut daemon = start(&h, &path, None, &[]);
    let ready = receive(&socket);
    assert_state(&ready, "READY=1");
    // Ready means the database answered and the listener is bound: it serves right away.
    assert_eq!(
        daemon.get("/healthz").map(|(status, _)| status),
        Some(200),
        "{}",
        tail(&daemon.logs())
    );
    assert!(
        h.dir.path().join("datacap.sqlite").exists(),
        "the database was opened before READY=1"
    );
    stop(&mut daemon, &socket);
}

#[test]
fn sighup_applies_the_log_filter_names_restart_keys_and_refuses_a_broken_file() {
    let h = Harness::new(SCENARIO, false);
    let (socket, path) = notify_socket(h.dir.path());
    let config = h.dir.path().join("datacap.toml");
    std::fs::write(
        &config,
        "[log]\nlevel = \"warn\"\n\n[worker]\nconcurrency = 4\n",
    )
    .unwrap();
    let mut daemon = start(&h, &path, Some(&config), &[]);
    assert_state(&receive(&socket), "READY=1");

    // A reloadable key (the log filter) and one that needs a restart.
    let reloadable = "[log]\nlevel = \"info\"\n\n[worker]\nconcurrency = 8\n";
    reload(&daemon, &socket, &config, reloadable);
    eventually("the reload is logged", Duration::from_secs(30), || {
        daemon.logs().contains("config reloaded")
    });
    let logs = daemon.logs();
    // At "warn" the reload's own first info line was filtered; after the swap info shows.
    assert!(
        !logs.contains("reloading the config file"),
        "the old filter was in force: {logs}"
    );
    assert!(
        logs.lines()
            .any(|line| line.contains("config key applied") && line.contains("log.level")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|line| line.contains("needs a restart") && line.contains("worker.concurrency")),
        "{logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|line| line.contains("needs a restart") && line.contains("log.level")),
        "{logs}"
    );

    // A broken file: every problem logged, the daemon keeps running on the old config.
    let broken = "[log]\nlevel = \"info\"\n\n[worker]\nconcurrency = 0\npoll_intervall = \"5m\"\n\n[wokrer]\nlease = \"1m\"\n";
    reload(&daemon, &socket, &config, broken);
    eventually("the refusal is logged", Duration::from_secs(30), || {
        daemon.logs().contains("wokrer")
    });
    let logs = daemon.logs();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("config reload refused"))
        .collect();
    let file = config.display().to_string();
    for expected in [
        format!("{file}:5: worker.concurrency: must be 1 to 10000, got 0"),
        format!("{file}:6: worker.poll_intervall: unknown field `poll_intervall`"),
        format!("{file}:8: wokrer: unknown section"),
    ] {
        assert!(
            refused.iter().any(|line| line.contains(&expected)),
            "no refusal names {expected:?}: {refused:#?}"
        );
    }
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(daemon.get("/healthz").map(|(status, _)| status), Some(200));

    stop(&mut daemon, &socket);
}

/// Email channels due later than `minutes` from now (the database's clock).
fn email_due_beyond(h: &Harness, minutes: u32) -> i64 {
    h.count(&format!(
        "SELECT COUNT(*) FROM sync_state WHERE channel = 'email' \
         AND next_due_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+{minutes} minutes')"
    ))
}

#[test]
fn sighup_applies_a_new_poll_interval_to_the_next_attempts() {
    let h = Harness::new(SCENARIO, false);
    h.apply();
    let (socket, path) = notify_socket(h.dir.path());
    let config = h.dir.path().join("datacap.toml");
    let interval = |email: &str| {
        format!("[log]\nlevel = \"info\"\n\n[worker]\nemail_interval = \"{email}\"\n")
    };
    std::fs::write(&config, interval("1s")).unwrap();
    // The interval comes from the file alone (the harness sets it in the environment).
    let mut daemon = start(
        &h,
        &path,
        Some(&config),
        &["DATACAP_WORKER__EMAIL_INTERVAL"],
    );
    assert_state(&receive(&socket), "READY=1");
    let successes =
        "SELECT COUNT(*) FROM import_attempts WHERE channel = 'email' AND outcome = 'success'";
    eventually(
        "healthy mailboxes are polled every second",
        Duration::from_secs(60),
        || h.count(successes) >= 8,
    );
    // No schedule reaches 90 minutes out: 1s on success, 30m (± 10%) re-checks.
    assert_eq!(email_due_beyond(&h, 90), 0);

    reload(&daemon, &socket, &config, &interval("2h"));
    // The next successful email attempt is scheduled two hours (± 10%) later.
    eventually(
        "an email channel is scheduled two hours out",
        Duration::from_secs(60),
        || email_due_beyond(&h, 90) > 0,
    );
    let logs = daemon.logs();
    assert!(
        logs.lines()
            .any(|line| line.contains("config key applied")
                && line.contains("worker.email_interval")),
        "{logs}"
    );
    stop(&mut daemon, &socket);
}

#[test]
fn run_refuses_to_start_on_any_config_problem_and_writes_nothing() {
    let h = Harness::new(SCENARIO, false);
    let config = h.dir.path().join("datacap.toml");
    std::fs::write(
        &config,
        "[wokrer]\nconcurrency = 4\n\n[worker]\npoll_intervall = \"5m\"\nlease = \"soon\"\n",
    )
    .unwrap();
    let file = config.display().to_string();
    let output = h
        .command(&[], &["--config", &file, "run"])
        .output()
        .expect("datacap runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = [
        format!("error: {file}:1: wokrer: unknown section"),
        format!("error: {file}:5: worker.poll_intervall: unknown field `poll_intervall`"),
        format!("error: {file}:6: worker.lease: \"soon\" is not a duration"),
    ];
    assert_printed_lines(&stderr, 3, &expected);
    assert!(
        !h.dir.path().join("datacap.sqlite").exists(),
        "nothing was written"
    );
}
