//! `--perf FILE`: a system-wide `perf record` (call graphs) of the incremental cycle only,
//! so the profile holds the worker (this process), the sim's child and the PostgreSQL
//! backends over just the steady state; `perf report -i FILE --sort comm,dso,sym` splits
//! them. Profiling is the operator's choice: without the flag nothing is started.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

const SIGINT: i32 = 2;

/// A running `perf record`, stopped (SIGINT, so it writes its file whole) by [`Profile::stop`].
pub(crate) struct Profile {
    child: Child,
}

impl Profile {
    /// Starts `perf record -a -g` writing to `out`; fails when perf cannot be started.
    pub(crate) fn start(out: &Path) -> anyhow::Result<Profile> {
        let child = Command::new("perf")
            .args(["record", "-a", "-g", "-F", "499", "--quiet", "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start `perf record` (is linux-perf installed?)")?;
        // perf needs a moment to open its events before the cycle starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Profile { child })
    }

    /// Stops the recording and waits for perf to finish writing its file.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .context("cannot signal `perf record`")?;
        anyhow::ensure!(status.success(), "cannot signal `perf record`: {status}");
        let exit = self.child.wait().context("`perf record` did not finish")?;
        // perf writes its file on SIGINT and then ends by that signal.
        anyhow::ensure!(
            exit.success() || exit.signal() == Some(SIGINT),
            "`perf record` failed: {exit}"
        );
        Ok(())
    }
}
