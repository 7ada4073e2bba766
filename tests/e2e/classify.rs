//! `datacap classify` as a process: the real binary on the shipped examples and on bad
//! input, checking stdout, stderr and the exit code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::harness::repo_file;

/// The text of an example file of the repository.
fn read_example(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).expect("example file")
}

fn classify(input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_datacap"))
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start datacap");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("datacap runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

/// The (color, reason) of one member's icon.
fn icon<'a>(answer: &'a serde_json::Value, member: usize, icon: &str) -> (&'a str, &'a str) {
    let value = &answer["members"][member][icon];
    (
        value["color"].as_str().expect("color"),
        value["reason"].as_str().expect("reason"),
    )
}

#[test]
fn the_status_model_example() {
    let answer = json(&classify(&read_example("config/examples/classify.json")));
    assert_eq!(answer["members"][0]["id"], "m1");
    assert_eq!(icon(&answer, 0, "capture"), ("green", "importing"));
    assert_eq!(icon(&answer, 0, "email"), ("green", "importing"));
    assert_eq!(
        icon(&answer, 0, "calendar"),
        ("gray", "awaiting_first_import")
    );
    for name in ["capture", "email", "calendar"] {
        let value = &answer["members"][0][name];
        assert!(!value["message"].as_str().expect("message").is_empty());
        assert!(!value["resolution"].as_str().expect("resolution").is_empty());
    }
    assert_eq!(answer["banners"], serde_json::json!([]));
}

#[test]
fn a_user_by_user_team_with_banners() {
    let answer = json(&classify(&read_example(
        "config/examples/classify-team.json",
    )));
    let ids: Vec<&str> = answer["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| member["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["ana", "bo", "cy", "di"]);
    // email/calendar_authorized are ignored for user-by-user.
    assert_eq!(icon(&answer, 0, "capture"), ("green", "importing"));
    assert_eq!(
        icon(&answer, 1, "email"),
        ("yellow", "member_not_connected")
    );
    assert_eq!(
        icon(&answer, 1, "capture"),
        ("yellow", "member_not_connected")
    );
    // Three transients after a success (given out of order): red.
    assert_eq!(icon(&answer, 2, "email"), ("red", "technical_failure"));
    assert_eq!(
        icon(&answer, 2, "calendar"),
        ("yellow", "member_connection_invalid")
    );
    assert_eq!(icon(&answer, 2, "capture"), ("red", "technical_failure"));
    assert_eq!(icon(&answer, 3, "capture"), ("gray", "disabled"));

    let banners: Vec<(&str, &str, u64)> = answer["banners"]
        .as_array()
        .expect("banners")
        .iter()
        .map(|banner| {
            assert_eq!(banner["provider"], "microsoft_365");
            (
                banner["code"].as_str().expect("code"),
                banner["color"].as_str().expect("color"),
                banner["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        banners,
        [
            ("members_not_connected", "yellow", 1),
            ("members_connection_invalid", "yellow", 1),
            ("members_seat_missing", "yellow", 1),
            ("members_technical_problem", "red", 1),
        ]
    );
    let not_connected = answer["banners"][0]["message"].as_str().expect("message");
    assert!(not_connected.starts_with("1 member "), "{not_connected}");
    assert!(not_connected.contains("Microsoft 365"), "{not_connected}");
}

#[test]
fn bad_input_fails_with_one_line_naming_the_field() {
    let example = read_example("config/examples/classify.json");
    let cases = [
        ("{".to_owned(), "input"),
        (String::new(), "input"),
        (
            example.replace("\"success\"", "\"sucess\""),
            "members[0].attempts[0].outcome",
        ),
        (
            example.replace("\"has_recording_seat\": true,", ""),
            "has_recording_seat",
        ),
        (
            example.replace("2026-11-28T11:55:00Z", "28/11/2026"),
            "members[0].attempts[0].at",
        ),
        (
            example.replace(
                "\"red_after_consecutive_failures\": 3",
                "\"red_after_consecutive_failures\": -2",
            ),
            "thresholds.red_after_consecutive_failures",
        ),
        (
            example
                .replace("\"company_wide\"", "\"user_by_user\"")
                .replace("\"connection\": \"connected\",", ""),
            "members[0].connection",
        ),
    ];
    for (input, field) in cases {
        let output = classify(&input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{field}: exit 1, not success and not a panic: {stderr}"
        );
        assert!(output.stdout.is_empty(), "no partial output");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(field), "{stderr} should name {field}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn input_may_come_from_a_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_datacap"))
        .args(["classify", "--input"])
        .arg(repo_file("config/examples/classify.json"))
        .output()
        .expect("run");
    assert_eq!(json(&output)["members"][0]["id"], "m1");
    let missing = Command::new(env!("CARGO_BIN_EXE_datacap"))
        .args(["classify", "--input", "/nonexistent/input.json"])
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/input.json"));
}
