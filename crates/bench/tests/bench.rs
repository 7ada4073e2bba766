//! `datacap-bench` at a tiny size, so the harness cannot rot: it starts the sim, runs a
//! full and an incremental cycle on SQLite and on PostgreSQL, and writes its figures as
//! JSON. Asserts what the run did (every member-channel polled, all successes, both
//! cycles, a raw rate measured), never how fast.

use std::process::Command;

use serde_json::Value;

/// The PostgreSQL server the throwaway database is made on (`DATACAP_TEST_POSTGRES_URL`,
/// as for every other test).
fn admin_url() -> String {
    std::env::var("DATACAP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn bench(database: &str) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_datacap-bench"))
        .args([
            "--members",
            "25",
            "--concurrency",
            "8",
            "--load-seconds",
            "1",
        ])
        .args(["--database", database, "--out"])
        .arg(&out)
        .output()
        .expect("run datacap-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("polls/s"), "{stdout}");
    assert!(stdout.contains("floor: database inserts"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(&out).expect("figures written"))
        .expect("figures are JSON")
}

fn check(report: &Value, database: &str) {
    assert_eq!(report["database"], database);
    assert_eq!(report["member_channels"], 50);
    let cycles = report["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 2);
    for (cycle, name) in cycles.iter().zip(["full", "incremental"]) {
        assert_eq!(cycle["cycle"], name);
        assert_eq!(cycle["polls"], 50, "{cycle}");
        assert_eq!(cycle["outcomes"]["success"], 50, "{cycle}");
        assert_eq!(cycle["own_failures"], 0, "{cycle}");
        assert!(
            cycle["rows_written"].as_i64().unwrap_or(0) >= 50 * 5,
            "{cycle}"
        );
        assert!(
            cycle["sim_requests_per_poll"].as_f64().unwrap_or(0.0) >= 1.0,
            "{cycle}"
        );
    }
    // The full import brought one message and one event per mailbox.
    assert!(cycles[0]["rows_written"].as_i64() > cycles[1]["rows_written"].as_i64());
    assert!(
        report["sim_raw_requests_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(report["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0);
    // Issue 18: the floor beside us, measured in the same run, and the ratio to it.
    let figure = |name: &str| report[name].as_f64().unwrap_or(0.0);
    let (rows, floor) = (
        figure("database_insert_rows_per_second"),
        figure("floor_polls_per_second"),
    );
    let raw = figure("sim_raw_requests_per_second");
    assert!(rows > 0.0 && floor > 0.0, "{report}");
    assert!(
        floor < rows && floor < raw,
        "the floor is below both parts: {report}"
    );
    let incremental = cycles[1]["polls_per_second"].as_f64().unwrap_or(0.0);
    let ratio = figure("ratio_to_floor_incremental");
    assert!(
        (ratio - incremental / floor).abs() < 1e-6 * ratio.max(1.0),
        "{report}"
    );
}

#[test]
fn bench_runs_a_full_and_an_incremental_cycle_on_sqlite() {
    check(&bench("sqlite"), "sqlite");
}

#[test]
fn bench_runs_a_full_and_an_incremental_cycle_on_postgres() {
    check(&bench(&admin_url()), "postgresql");
}
