-- sync_state is a queue: every claim and every attempt write updates a row, and an attempt
-- moves its next_due_at, which leaves a dead entry in sync_state_due_order at the front of
-- the due range, where every claim starts reading. With the default autovacuum trigger
-- (50 rows plus 20 % of the table) a 1,000,000-row sync_state had gathered 1.7 million dead
-- row versions and no vacuum yet in the middle of an incremental cycle, and one claim read
-- 10,554 buffers (56 ms) stepping over them (docs/performance.md, "1M member-channels").
-- Vacuum it after every 10,000 dead rows instead, whatever its size, and without the
-- cost-based pauses (it is a narrow table; the vacuum is short).
-- SQLite updates rows in place and keeps no dead versions: it has no counterpart.
ALTER TABLE sync_state SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
