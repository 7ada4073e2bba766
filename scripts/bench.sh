#!/usr/bin/env bash
# The benchmark matrix of docs/performance.md: builds `datacap` in release and runs
# `datacap-bench` at 10k and 100k member-channels on SQLite and PostgreSQL (and 1M on
# PostgreSQL, with the reduced sim payload, when given `--with-1m`). Each run writes its
# figures to docs/bench/<time>-<size>-<database>.json; at the end the script prints one
# markdown table row per run, ready for the table in docs/performance.md.
#
#   scripts/bench.sh [--with-1m]
#
# Environment: DATACAP_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres:
# a throwaway database is created on it per run and dropped), CARGO_TARGET_DIR (default
# target/). Run it on a quiet machine: the figures are wall-clock rates.
set -euo pipefail
cd "$(dirname "$0")/.."

with_1m=false
for arg in "$@"; do
  case "$arg" in
    --with-1m) with_1m=true ;;
    *) echo "usage: scripts/bench.sh [--with-1m]" >&2; exit 2 ;;
  esac
done

postgres="${DATACAP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p datacap-bench
bench="$target/release/datacap-bench"

mkdir -p docs/bench
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
rows=()

# run LABEL MEMBERS ITEMS DATABASE
run() {
  local label="$1" members="$2" items="$3" database="$4" kind
  kind=$([ "$database" = sqlite ] && echo sqlite || echo postgresql)
  local out="docs/bench/$stamp-$label-$kind.json"
  echo "== $label member-channels on $kind" >&2
  "$bench" --members "$members" --items "$items" --database "$database" --out "$out" >&2
  rows+=("$(row "$out")")
}

# One markdown table row from a run's JSON (columns as in `header`).
header='| member-channels | database | items | setup s | polls/s full / incr | worker CPU µs/poll full / incr | PostgreSQL CPU µs/poll full / incr | latency p50 / p99 ms (incr) | rows/s full / incr | peak RSS MiB | sim raw req/s | ratio full / incr |'
row() {
  jq -r '
    def f0: . * 1 | round | tostring;
    def f1: . * 10 | round / 10 | tostring;
    def f2: . * 100 | round / 100 | tostring;
    .cycles as $c |
    "| \(.member_channels) | \(.database) | \(.items_per_mailbox) | \(.setup_seconds | f1)"
    + " | \($c[0].polls_per_second | f0) / \($c[1].polls_per_second | f0)"
    + " | \($c[0].worker_cpu_us_per_poll | f0) / \($c[1].worker_cpu_us_per_poll | f0)"
    + " | \($c[0].database_cpu_us_per_poll // "-" | if type == "number" then f0 else . end)"
    + " / \($c[1].database_cpu_us_per_poll // "-" | if type == "number" then f0 else . end)"
    + " | \($c[1].latency_p50_ms | f1) / \($c[1].latency_p99_ms | f1)"
    + " | \($c[0].rows_per_second | f0) / \($c[1].rows_per_second | f0)"
    + " | \(.peak_rss_mib | f0) | \(.sim_raw_requests_per_second | f0)"
    + " | \(.ratio_full | f2) / \(.ratio_incremental | f2) |"' "$1"
}

run 10k 5000 1 sqlite
run 10k 5000 1 "$postgres"
run 100k 50000 1 sqlite
run 100k 50000 1 "$postgres"
if $with_1m; then
  run 1m 500000 0 "$postgres"
fi

echo "$header"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
