//! CPU and memory from /proc: a process's CPU seconds (with its children's), the local
//! PostgreSQL server's, and this process's peak RSS.

/// User plus system CPU seconds from a `/proc/…/stat` file (0 when unreadable).
pub(crate) fn cpu_seconds_of(path: &str) -> f64 {
    stat_seconds(path, &[11, 12])
}

/// User plus system CPU seconds of a process and of its children it has waited for.
pub(crate) fn cpu_seconds_with_children(path: &str) -> f64 {
    stat_seconds(path, &[11, 12, 13, 14])
}

/// The sum of clock-tick fields of a `/proc/…/stat` file, counted from the field after the
/// command name (`utime` is 11, `stime` 12, `cutime` 13, `cstime` 14), in seconds.
pub(crate) fn stat_seconds(path: &str, indexes: &[usize]) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    indexes.iter().map(|index| field(*index)).sum::<f64>() / ticks
}

/// CPU seconds of every `postgres` process on this machine (the server's backends,
/// writers and checkpointer), when `url` is a PostgreSQL one and any is readable. Each
/// process counts its children that ended too (the postmaster's reaped backends: a pool
/// that closes a connection mid-cycle must not take its CPU out of the total).
pub(crate) fn postgres_cpu_seconds(url: &str) -> Option<f64> {
    if url.starts_with("sqlite") {
        return None;
    }
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let is_postgres = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if is_postgres {
            let stat = path.join("stat");
            *total.get_or_insert(0.0) += cpu_seconds_with_children(&stat.to_string_lossy());
        }
    }
    total
}

pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
