//! docs/openapi.yaml is the contract the server keeps (issue 20 §5, §7): schemathesis, the
//! tool integrators run against an OpenAPI service, drives a running `datacap demo` with
//! every check on (server errors, status codes the document does not list, content types,
//! response schemas and headers, schema-valid requests refused, invalid ones accepted,
//! ignored auth, unsupported methods), once with the operator token and once without
//! (random cookies and no bearer: every protected route must say 401 or the sign-in
//! redirect, as documented). Its settings, with why each exists, are in
//! tests/api/schemathesis.toml.
//!
//! schemathesis comes from the venv .ci/run builds from tests/api/requirements.txt
//! (`DATACAP_SCHEMATHESIS_VENV`, default /var/tmp/datacap-schemathesis-venv); without it
//! the test is skipped with a message, except under `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{Demo, repo_file};

/// Examples per operation and phase: bounded, so a run takes seconds, yet every route, its
/// parameters' edge values (the coverage phase) and random ones (fuzzing) are sent.
const MAX_EXAMPLES: &str = "25";

fn schemathesis() -> Option<PathBuf> {
    let venv = std::env::var_os("DATACAP_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/datacap-schemathesis-venv"));
    let tool = venv.join("bin/schemathesis");
    tool.exists().then_some(tool)
}

/// Runs schemathesis with every check against `base`; its report when it found anything.
fn run(tool: &Path, base: &str, token: Option<&str>, report: &Path) -> Result<String, String> {
    let mut command = Command::new(tool);
    command
        .arg("--config-file")
        .arg(repo_file("tests/api/schemathesis.toml"))
        .arg("run")
        .arg(repo_file("docs/openapi.yaml"))
        .args([
            "--url",
            base,
            "--checks",
            "all",
            "--max-examples",
            MAX_EXAMPLES,
        ])
        .args([
            "--seed",
            "20261204",
            "--workers",
            "1",
            "--request-timeout",
            "20",
        ])
        // No colours; its hypothesis database in the temporary directory, not the clone.
        .env("NO_COLOR", "1")
        .current_dir(report.parent().expect("report dir"))
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output().expect("schemathesis runs");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    std::fs::write(report, &said).expect("write the report");
    // The summary must show every operation was tested, not only that nothing failed.
    let figure = |label: &str| {
        said.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
            .map(str::to_owned)
    };
    let every = figure("Selected:")
        .and_then(|selected| {
            let (chosen, all) = selected.split_once('/')?;
            Some(chosen == all && figure("Tested:").as_deref() == Some(all))
        })
        .unwrap_or(false);
    if output.status.success() && every {
        Ok(said)
    } else {
        Err(said)
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn schemathesis_finds_nothing_the_contract_does_not_say_with_and_without_a_token() {
    let Some(tool) = schemathesis() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but schemathesis is missing (.ci/run installs tests/api/requirements.txt into DATACAP_SCHEMATHESIS_VENV)"
        );
        eprintln!("skipped: schemathesis is missing (DATACAP_SCHEMATHESIS_VENV)");
        return;
    };
    let demo = Demo::start();
    let base = demo.base();

    let reports = demo.state.path().join("reports");
    std::fs::create_dir_all(&reports).expect("reports dir");
    let with = run(
        &tool,
        &base,
        Some(demo.token.trim()),
        &reports.join("with-token.txt"),
    );
    let without = run(&tool, &base, None, &reports.join("without-token.txt"));
    for (name, result) in [
        ("with the operator token", &with),
        ("without a token", &without),
    ] {
        match result {
            Ok(said) => eprintln!(
                "schemathesis {name}: {}",
                said.lines()
                    .rev()
                    .find(|line| line.contains("generated"))
                    .unwrap_or("")
                    .trim()
            ),
            Err(said) => {
                panic!("schemathesis {name} found what docs/openapi.yaml does not say:\n{said}")
            }
        }
    }
}

/// The reason codes docs/openapi.yaml's `Reason` enum lists are the classifier's, in its
/// tie-break order: a new reason cannot reach the API undocumented.
#[test]
fn the_openapi_reason_enum_is_the_status_models() {
    let spec = std::fs::read_to_string(repo_file("docs/openapi.yaml")).expect("openapi.yaml");
    let block = spec
        .split_once("\n    Reason:\n")
        .expect("components.schemas.Reason")
        .1;
    let listed: Vec<&str> = block
        .split_once("      enum:\n")
        .expect("Reason has an enum")
        .1
        .lines()
        .map_while(|line| line.strip_prefix("        - "))
        .collect();
    let codes: Vec<&str> = datacap_core::Reason::ALL
        .iter()
        .map(|reason| reason.as_str())
        .collect();
    assert_eq!(listed, codes);
}
