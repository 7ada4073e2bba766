//! The binary as a process: one command with a clean environment, its output checked for
//! success, `datacap run` daemons logging to a file (signalled, awaited, killed on drop), a
//! `datacap demo` serving on a free port, and any child process killed and reaped when the
//! test ends, however it ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Harness, eventually, free_port, http};

/// Runs `datacap ARGS` in `dir` (so no config/datacap.toml is found there) with a clean
/// environment plus `env`.
pub fn datacap(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_datacap"));
    command.current_dir(dir).env_clear().args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("datacap runs")
}

/// The stdout of a command that must have succeeded (else its exit, stdout and the end of
/// its stderr).
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts that `printed` is `count` lines, among them one starting with each of `expected`.
pub fn assert_printed_lines(printed: &str, count: usize, expected: &[String]) {
    let lines: Vec<&str> = printed.lines().collect();
    for expected in expected {
        assert!(
            lines.iter().any(|line| line.starts_with(expected.as_str())),
            "no line starts with {expected:?}:\n{printed}"
        );
    }
    assert_eq!(lines.len(), count, "{printed}");
}

/// The last 40 lines of `text`.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A child process (a daemon, chromedriver) killed and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `datacap run` daemon whose logs go to a file.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub http: SocketAddr,
}

impl Harness {
    pub fn daemon(&self, name: &str, extra_env: &[(&str, &str)]) -> Daemon {
        self.daemon_at(name, free_port(), extra_env)
    }

    /// A daemon serving HTTP at `http`.
    pub fn daemon_at(&self, name: &str, http: SocketAddr, extra_env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!("{name}.log"));
        let listen = http.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("DATACAP_HTTP__LISTEN", listen.as_str()),
            ("DATACAP_WORKER__OWNER", name),
        ];
        env.extend_from_slice(extra_env);
        let child = self
            .command(&env, &["run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("datacap run starts");
        Daemon { child, log, http }
    }
}

impl Daemon {
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        std::net::TcpStream::connect(self.http).ok()?;
        Some(http(self.http, "GET", path, None))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; `None` when it did not exit within `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Still running (not exited, not crashed).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// `datacap demo` (the sim, every reason code, auth on) serving on a free port with its
/// state in a temp dir of its own, started and waited for until it polls; killed on drop.
pub struct Demo {
    // Declared first, so dropped first: the demo stops before its state dir goes.
    _process: KillOnDrop,
    pub state: tempfile::TempDir,
    pub listen: SocketAddr,
    /// The demo's stdout (`demo.out` in its state dir).
    pub stdout: PathBuf,
    /// The operator token the demo wrote to `web-operator-token` in its state dir.
    pub token: String,
}

impl Demo {
    pub fn start() -> Demo {
        let state = tempfile::tempdir().expect("temp dir");
        let listen = free_port();
        let stdout = state.path().join("demo.out");
        let process = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_datacap"))
                .args(["demo", "--listen", &listen.to_string(), "--state-dir"])
                .arg(state.path())
                .env_clear()
                .env("DATACAP_LOG__LEVEL", "warn")
                .stdout(std::fs::File::create(&stdout).expect("demo.out"))
                .stderr(Stdio::null())
                .spawn()
                .expect("datacap demo starts"),
        );
        eventually("the demo serves its page", Duration::from_secs(240), || {
            std::fs::read_to_string(&stdout).is_ok_and(|text| text.contains("polling on"))
        });
        let token = std::fs::read_to_string(state.path().join("web-operator-token"))
            .expect("the demo's operator token");
        Demo {
            _process: process,
            state,
            listen,
            stdout,
            token,
        }
    }

    /// `http://` and the address it serves on.
    pub fn base(&self) -> String {
        format!("http://{}", self.listen)
    }
}
