//! The sim as the tests start, steer and read it: on loopback with a scenario, its control
//! endpoint (faults, new mail), what it holds and its request and fault counters.

use datacap_sim::{Endpoints, Scenario, Sim, SimHandle};
use serde_json::Value;

use super::{Harness, http, repo_file};

/// The sim serving the scenario `toml` (named `file` in its errors) on a free loopback
/// port, on a runtime of its own that the caller keeps for as long as the sim runs.
pub fn start_sim(toml: &str, file: &str) -> (tokio::runtime::Runtime, SimHandle) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scenario = Scenario::from_toml(toml, file, &repo_file("config/sim")).expect("scenario");
    let sim = runtime
        .block_on(Sim::start(scenario, "127.0.0.1:0".parse().unwrap()))
        .expect("sim starts");
    (runtime, sim)
}

/// `first`, then the environment that points the binary at the sim's provider APIs.
pub fn with_sim_env(
    e: Endpoints,
    first: impl IntoIterator<Item = (&'static str, String)>,
) -> Vec<(String, String)> {
    first
        .into_iter()
        .chain([
            ("DATACAP_GOOGLE__TOKEN_URL", e.google_token_url),
            ("DATACAP_GOOGLE__GMAIL_BASE", e.gmail_base),
            ("DATACAP_GOOGLE__CALENDAR_BASE", e.calendar_base),
            ("DATACAP_GOOGLE__DIRECTORY_BASE", e.directory_base),
            ("DATACAP_MICROSOFT__LOGIN_BASE", e.microsoft_login_base),
            ("DATACAP_MICROSOFT__GRAPH_BASE", e.graph_base),
        ])
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

impl Harness {
    /// POSTs `body` to the sim's control endpoint.
    pub fn control(&self, path: &str, body: Value) -> Value {
        let addr = self.sim.as_ref().unwrap().local_addr();
        let (status, text) = http(
            addr,
            "POST",
            &format!("/_sim/{path}"),
            Some(&body.to_string()),
        );
        assert!(
            (200..300).contains(&status),
            "control {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// What the sim holds: (member id = local part, messages, events) for every user.
    pub fn sim_holds(&self) -> Vec<(String, i64, i64)> {
        let (status, body) = self.sim_get("/_sim/users");
        assert_eq!(status, 200, "{body}");
        let users: Value = serde_json::from_str(&body).unwrap();
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|user| {
                let email = user["email"].as_str().unwrap();
                (
                    email.split('@').next().unwrap().to_owned(),
                    user["messages"].as_i64().unwrap(),
                    user["events"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// GETs `path` from the sim.
    pub fn sim_get(&self, path: &str) -> (u16, String) {
        http(self.sim.as_ref().unwrap().local_addr(), "GET", path, None)
    }

    /// The sim's request count so far.
    pub fn sim_requests(&self) -> u64 {
        let (_, body) = self.sim_get("/_sim/stats");
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["requests_total"].as_u64().unwrap()
    }

    /// How often the sim has fired fault `kind` (`RateLimited`, …) since it started.
    pub fn sim_faults_fired(&self, kind: &str) -> u64 {
        let (_, body) = self.sim_get("/_sim/stats");
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["faults_fired"][kind].as_u64().unwrap_or(0)
    }
}
