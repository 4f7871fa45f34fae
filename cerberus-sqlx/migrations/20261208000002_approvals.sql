-- Calls held for an admin's approval: made by the instance that holds the call, answered through the
-- admin API of any instance, read back by the waiting one. Arguments are stored redacted, as the
-- audit log stores payloads.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    method          TEXT NOT NULL,
    target          TEXT,
    arguments       TEXT,
    guardrail       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'timed_out')),
    requested_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    note            TEXT
);
CREATE INDEX approvals_by_organisation ON approvals (organisation_id, requested_at);
CREATE INDEX approvals_pending ON approvals (organisation_id, requested_at) WHERE status = 'pending';
