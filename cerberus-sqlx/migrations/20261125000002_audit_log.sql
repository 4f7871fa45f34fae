-- The audit log: one row per message through the proxy. No foreign keys: agents of a configuration file
-- are audited too, and records outlive what they name.
CREATE TABLE audit_logs (
    id              TEXT PRIMARY KEY,
    occurred_at     BIGINT NOT NULL,
    organisation_id TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    key_prefix      TEXT,
    session_id      TEXT,
    jsonrpc_id      TEXT,
    direction       TEXT NOT NULL,
    method          TEXT,
    target          TEXT,
    decision        TEXT NOT NULL,
    trace           TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    overhead_us     BIGINT NOT NULL
);
-- Every admin query is one organisation's records in a time range, newest first (cursor: time, id).
CREATE INDEX audit_logs_by_time ON audit_logs (organisation_id, occurred_at, id);
