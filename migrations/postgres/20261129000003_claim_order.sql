-- The claim's order as an index. Keep in step with ../sqlite/20261129000003_claim_order.sql.
-- A claim takes the oldest due jobs ordered by (next_due_at, member_id, channel). On an
-- index of next_due_at alone, jobs that share a due time (every member a tenants file just
-- added, all due at once) had to be read and sorted in full to find the first few: a
-- claim on 100,000 freshly applied member-channels took 64-176 ms on PostgreSQL instead
-- of 3 ms (docs/performance.md). The queue-lag read uses the same index.
CREATE INDEX sync_state_due_order ON sync_state (next_due_at, member_id, channel);
DROP INDEX sync_state_due;
