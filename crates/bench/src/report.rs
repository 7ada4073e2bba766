//! The figures of a run: per cycle (polls/s, CPU per poll of the worker, the sim and
//! PostgreSQL, latency percentiles, rows written), the sim's raw rate and the ratios, as JSON
//! and as the table printed on stdout.

use serde::Serialize;

use crate::say;

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) members: usize,
    pub(crate) member_channels: usize,
    pub(crate) database: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) items_per_mailbox: usize,
    pub(crate) setup_seconds: f64,
    pub(crate) cycles: Vec<CycleFigures>,
    pub(crate) sim_raw_requests_per_second: f64,
    /// Full-cycle polls/s ÷ the sim's raw request rate.
    pub(crate) ratio_full: f64,
    /// Incremental-cycle polls/s ÷ the sim's raw request rate.
    pub(crate) ratio_incremental: f64,
    /// The database's rate for attempt-shaped rows inserted in batches of
    /// [`crate::floor::BATCH`], nothing else (`floor.rs`).
    pub(crate) database_insert_rows_per_second: f64,
    /// 1 / (1/raw + 1/rows): the sim's raw rate for an incremental poll's requests and
    /// the insert rate, one after the other.
    pub(crate) floor_polls_per_second: f64,
    /// Incremental-cycle polls/s ÷ the floor (issue 18's goal: at least 0.4).
    pub(crate) ratio_to_floor_incremental: f64,
    pub(crate) peak_rss_mib: f64,
    /// The PostgreSQL server's settings that matter at scale (empty on SQLite).
    pub(crate) database_settings: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct CycleFigures {
    pub(crate) cycle: &'static str,
    pub(crate) polls: u64,
    pub(crate) seconds: f64,
    pub(crate) polls_per_second: f64,
    pub(crate) worker_cpu_us_per_poll: f64,
    pub(crate) sim_cpu_us_per_poll: f64,
    /// PostgreSQL's CPU per poll (every `postgres` process on this machine: the server
    /// must be local and otherwise idle); `None` on SQLite (it runs inside the worker, so
    /// the worker's figure includes it) or when no local server process is readable.
    pub(crate) database_cpu_us_per_poll: Option<f64>,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    pub(crate) rows_written: i64,
    pub(crate) rows_per_second: f64,
    pub(crate) sim_requests_per_poll: f64,
    pub(crate) own_failures: u32,
    pub(crate) outcomes: std::collections::BTreeMap<String, u32>,
}

pub(crate) fn print_table(report: &Report) -> anyhow::Result<()> {
    say(&format!(
        "{} member-channels ({} members), {}, concurrency {}, setup {:.1} s",
        report.member_channels,
        report.members,
        report.database,
        report.concurrency,
        report.setup_seconds
    ))?;
    if !report.database_settings.is_empty() {
        let settings: Vec<String> = report
            .database_settings
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        say(&format!("server: {}", settings.join(" ")))?;
    }
    for cycle in &report.cycles {
        say(&format!(
            "{:<12} {:>7} polls in {:>6.1} s = {:>6.0} polls/s; worker CPU {:>5.0} µs/poll; sim CPU {:>5.0} µs/poll; database CPU {} µs/poll; latency p50 {:.1} ms p99 {:.1} ms; {:.0} rows/s; {:.1} sim requests/poll; own failures {}",
            cycle.cycle,
            cycle.polls,
            cycle.seconds,
            cycle.polls_per_second,
            cycle.worker_cpu_us_per_poll,
            cycle.sim_cpu_us_per_poll,
            cycle
                .database_cpu_us_per_poll
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.0}")),
            cycle.latency_p50_ms,
            cycle.latency_p99_ms,
            cycle.rows_per_second,
            cycle.sim_requests_per_poll,
            cycle.own_failures,
        ))?;
    }
    say(&format!(
        "sim raw rate {:.0} requests/s (an incremental poll's requests, {} connections); ratio polls/s ÷ raw: full {:.2}, incremental {:.2}; peak RSS {:.0} MiB",
        report.sim_raw_requests_per_second,
        report.concurrency,
        report.ratio_full,
        report.ratio_incremental,
        report.peak_rss_mib
    ))?;
    say(&format!(
        "floor: database inserts {:.0} attempt rows/s (batches of {}); floor = 1/(1/raw + 1/rows) = {:.0} polls/s; incremental ÷ floor = {:.2}",
        report.database_insert_rows_per_second,
        crate::floor::BATCH,
        report.floor_polls_per_second,
        report.ratio_to_floor_incremental
    ))
}
