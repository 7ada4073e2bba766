//! `datacap-bench`: the throughput harness, a binary of its own (not in the production
//! `datacap` binary). It starts the provider sim as a child process
//! (this binary's hidden `serve-sim`, so its CPU and memory are its own) with N Google Workspace members,
//! sets up a throwaway database (a SQLite file, or a database created on a PostgreSQL
//! server and dropped after), runs the worker for a full cycle (first import of every
//! mailbox) and an incremental cycle, and measures, per cycle: polls/s, the worker's CPU
//! per poll, p50/p99 attempt latency (connector start to finish, from the attempt rows),
//! database rows written per second, and the sim's and (on a local server) PostgreSQL's
//! CPU per poll. Then a plain HTTP load loop (as many connections as the worker's
//! concurrency) repeating the requests an incremental poll makes (Gmail `history.list`,
//! Calendar `events.list` with a sync token) gives the sim's raw request rate, and the
//! ratio worker polls/s ÷ raw requests/s. Peak RSS is this process's (the worker; the load loop adds little).
//! Figures go to stdout and, with `--out`, to a JSON file. docs/performance.md says how
//! to run it and what the figures were.

mod floor;
mod load;
mod measure;
mod procfs;
mod profile;
mod report;
mod setup;
mod sim;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// What to measure.
#[derive(clap::Parser)]
#[command(
    name = "datacap-bench",
    version,
    about = "datacap's throughput harness: the worker against the provider sim on SQLite or PostgreSQL"
)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    /// Members in the sim and the database; each has an email and a calendar channel, so
    /// a cycle polls twice as many member-channels.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) members: usize,
    /// `sqlite` (a file in a temporary directory) or a `postgres://` URL of a server on
    /// which a throwaway database is created and dropped afterwards.
    #[arg(long, default_value = "sqlite")]
    pub(crate) database: String,
    /// Messages and events per mailbox in the sim (0 for a reduced payload at 1M).
    #[arg(long, default_value_t = 1)]
    pub(crate) items: usize,
    /// Attempts in flight at most (the worker's concurrency).
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// How long the raw HTTP load loop against the sim runs, in seconds.
    #[arg(long, default_value_t = 5)]
    pub(crate) load_seconds: u64,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Record a system-wide `perf` profile (with call graphs) of the incremental cycle
    /// only into this file (needs linux-perf; `perf report -i FILE --sort comm,dso,sym`).
    #[arg(long, value_name = "FILE")]
    pub(crate) perf: Option<PathBuf>,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// Not for people: how the harness runs its own parts.
#[derive(clap::Subcommand)]
enum Internal {
    /// Serves the provider sim from a scenario file until killed (the harness's child).
    #[command(hide = true)]
    ServeSim {
        #[arg(long)]
        scenario: PathBuf,
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let result = match args.internal {
        Some(Internal::ServeSim { scenario, listen }) => sim::serve(&scenario, listen),
        None => run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // The one line an operator reads; anyhow's chain says why.
            let _ = writeln!(std::io::stderr(), "datacap-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the harness.
fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.members == 0 || args.concurrency == 0 {
        anyhow::bail!("--members and --concurrency must be at least 1");
    }
    let postgres = match args.database.as_str() {
        "sqlite" => false,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => true,
        _ => anyhow::bail!("--database must be `sqlite` or a postgres:// url"),
    };
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut sim = sim::SimProcess::start(dir.path(), args.members, args.items)?;
    let result = runtime()?.block_on(measure::bench(args, postgres, dir.path(), &sim));
    sim.stop();
    let report = result?;
    let json = serde_json::to_string_pretty(&report).context("cannot encode the figures")?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    report::print_table(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes one line to stdout.
pub(crate) fn say(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write stdout")
}

/// The worker's runtime: two threads, as `datacap run` has on a machine of two cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    datacap_worker::runtime().context("cannot start the async runtime")
}
