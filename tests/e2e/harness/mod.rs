//! What every end-to-end test stands on: the real `datacap` binary (built by cargo for this
//! test target) against the provider sim on loopback and a real database. [`Harness`] is a
//! running sim, a temp dir with the service-account key and the tenants file, and the
//! environment that points the binary at both and at a SQLite file or a fresh PostgreSQL
//! database; the modules below hold the rest, one job each: the scenarios and tenants files
//! ([`scenario`]), the sim's control endpoint ([`sim`]), the databases ([`db`]), `datacap`
//! commands and daemons ([`daemon`]), plain HTTP on loopback ([`http`]), status reports
//! ([`status`]), waiting with a deadline ([`wait`]), the members' connect flow
//! ([`connect`]) and the real browser ([`browser`]).
//!
//! Tests in this binary share one process: each takes its own temp dir, database and ports
//! (from [`free_port`]), and none sets an environment variable of the process.

pub mod browser;
pub mod connect;
pub mod daemon;
pub mod db;
pub mod http;
pub mod scenario;
pub mod sim;
pub mod status;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::Command;

use datacap_sim::SimHandle;
use serde_json::{Value, json};

pub use connect::*;
pub use daemon::*;
pub use db::*;
pub use http::*;
pub use scenario::*;
pub use status::*;
pub use wait::*;

/// A file of the repository, from its root (`config/sim`, `docs/openapi.yaml`, …).
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../")).join(path)
}

/// Runs `future` to its end on a current-thread runtime of its own (the tests are sync:
/// database reads, browser sessions).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A running sim, a temp dir with the key file and tenants file, and the environment that
/// points the binary at both and at a database.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub sim: Option<SimHandle>,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub tenants: PathBuf,
    pub database: Option<TestDatabase>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
        if let Some(database) = self.database.take() {
            database.drop_database();
        }
    }
}

impl Harness {
    pub fn new(scenario: &str, postgres: bool) -> Harness {
        let (runtime, sim) = sim::start_sim(scenario, "test.toml");
        let dir = tempfile::tempdir().unwrap();
        let private_key = std::fs::read_to_string(repo_file(
            "config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem",
        ))
        .unwrap();
        let key_file = dir.path().join("globex-service-account.json");
        std::fs::write(
            &key_file,
            json!({
                "type": "service_account",
                "client_email": "datacap@globex-sim.iam.gserviceaccount.com",
                "private_key": private_key,
                "private_key_id": "sim-key-1",
            })
            .to_string(),
        )
        .unwrap();
        let tenants = dir.path().join("tenants.toml");
        std::fs::write(&tenants, self::tenants(&key_file)).unwrap();
        let database = postgres.then(TestDatabase::create);
        let url = match &database {
            Some(database) => database.url.clone(),
            None => format!("sqlite://{}", dir.path().join("datacap.sqlite").display()),
        };
        // Everything is due again a second after it ran (a run polls each job once).
        let second = "1s".to_owned();
        let env = sim::with_sim_env(
            sim.endpoints().clone(),
            [
                ("DATACAP_DATABASE__URL", url),
                ("DATACAP_WORKER__EMAIL_INTERVAL", second.clone()),
                ("DATACAP_WORKER__CALENDAR_INTERVAL", second.clone()),
                ("DATACAP_WORKER__BACKOFF_BASE", second.clone()),
                ("DATACAP_WORKER__BACKOFF_CAP", second),
                ("DATACAP_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
                ("FABRIKAM_SECRET", "fabrikam-secret".to_owned()),
            ],
        );
        Harness {
            runtime,
            sim: Some(sim),
            dir,
            env,
            tenants,
            database,
        }
    }

    pub fn command(&self, extra_env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_datacap"));
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("DATACAP_LOG__LEVEL", "info")
            .args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        for (name, value) in extra_env {
            command.env(name, value);
        }
        command
    }

    pub fn datacap(&self, extra_env: &[(&str, &str)], args: &[&str]) -> String {
        let output = self
            .command(extra_env, args)
            .output()
            .expect("datacap runs");
        ok(&output)
    }

    /// `datacap run --once`, which must succeed having polled `channels` member-channels:
    /// its summary and its logs.
    pub fn run_once_polling(&self, channels: usize) -> (String, String) {
        let output = self.command(&[], &["run", "--once"]).output().unwrap();
        let summary = ok(&output);
        let logs = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            summary.starts_with(&format!("polled {channels} member-channels")),
            "{summary}\n{}",
            tail(&logs)
        );
        (summary, logs)
    }

    pub fn apply(&self) {
        let tenants = self.tenants.display().to_string();
        self.datacap(&[], &["apply", &tenants]);
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.datacap(&[], &["status", "--format", "json"]))
            .expect("status json")
    }
}

impl Harness {
    /// A harness for [`two_tenant_scenario`] with its tenants file applied.
    pub fn two_tenants(
        google: &[String],
        microsoft: &[String],
        google_user: &str,
        microsoft_user: &str,
        postgres: bool,
    ) -> Harness {
        let h = Harness::new(
            &two_tenant_scenario(google, microsoft, google_user, microsoft_user),
            postgres,
        );
        std::fs::write(&h.tenants, two_tenant_file(&h, google, microsoft)).unwrap();
        h.apply();
        h
    }
}
