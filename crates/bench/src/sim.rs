//! The provider sim as a child process of its own (this binary's hidden `serve-sim`), so
//! its CPU and memory are apart from the worker's: the scenario of N Google Workspace
//! members it serves.

use std::path::Path;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procfs::*;
use crate::setup::*;

/// The sim, run as `datacap sim` in a child process.
pub(crate) struct SimProcess {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl SimProcess {
    pub(crate) fn start(dir: &Path, members: usize, items: usize) -> anyhow::Result<SimProcess> {
        std::fs::create_dir_all(dir.join("keys")).context("cannot create the sim directory")?;
        std::fs::write(
            dir.join("keys/FAKE-TEST-ONLY-google-service-account.pub.pem"),
            SIM_PUBLIC_KEY,
        )
        .context("cannot write the sim key")?;
        let scenario = dir.join("scenario.toml");
        std::fs::write(&scenario, scenario_text(members, items))
            .context("cannot write the sim scenario")?;
        // A free port: bind, read it, let it go for the child.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("no free port for the sim")?
            .port();
        let exe = std::env::current_exe().context("cannot find the datacap-bench binary")?;
        let child = std::process::Command::new(exe)
            .arg("serve-sim")
            .arg("--scenario")
            .arg(&scenario)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the sim")?;
        let mut sim = SimProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        // Large scenarios take a while to build: wait generously.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sim.child.try_wait() {
                anyhow::bail!("the sim exited before serving: {status}");
            }
            if started.elapsed() > Duration::from_secs(600) {
                sim.stop();
                anyhow::bail!("the sim did not start serving within 600 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(sim)
    }

    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn scenario_text(members: usize, items: usize) -> String {
    let mut text = format!(
        "seed = 1\n[[tenant]]\nname = \"bench\"\nprovider = \"google\"\ndomain = \"{DOMAIN}\"\n\
         [tenant.service_account]\nclient_email = \"{CLIENT_EMAIL}\"\n\
         client_id = \"1\"\npublic_key = \"keys/FAKE-TEST-ONLY-google-service-account.pub.pem\"\n\
         delegated_scopes = [\"https://www.googleapis.com/auth/gmail.readonly\", \"https://www.googleapis.com/auth/calendar.readonly\"]\n",
    );
    for index in 0..members {
        text.push_str(&format!(
            "[[tenant.user]]\nemail = \"u{index}@{DOMAIN}\"\nmessages = {items}\nevents = {items}\n"
        ));
    }
    text
}

/// The child's side: serves `scenario` on `listen` until killed.
pub(crate) fn serve(scenario: &Path, listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    let scenario = datacap_sim::Scenario::from_file(scenario).context("invalid scenario")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let sim = datacap_sim::Sim::start(scenario, listen)
            .await
            .context("cannot start the sim")?;
        // The harness kills this process when it is done.
        std::future::pending::<()>().await;
        drop(sim);
        Ok(ExitCode::SUCCESS)
    })
}
