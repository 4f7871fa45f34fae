-- The redacted message, when the gateway keeps payloads (audit.payloads = "redacted"); NULL otherwise.
ALTER TABLE audit_logs ADD COLUMN payload TEXT;

-- One row per guardrail that changed or refused a message (the trace entries that are not "allow"),
-- so that analytics count redactions, blocks and throttles by guardrail type without parsing traces.
-- Written in the same transaction as the record it belongs to; deleted with it by retention.
CREATE TABLE audit_interventions (
    audit_id        TEXT NOT NULL,
    position        INTEGER NOT NULL,
    organisation_id TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    direction       TEXT NOT NULL,
    guardrail       TEXT NOT NULL,
    decision        TEXT NOT NULL,
    PRIMARY KEY (audit_id, position)
);
CREATE INDEX audit_interventions_by_time ON audit_interventions (organisation_id, occurred_at);
