-- For messages from the upstream: the HTTP status it answered with, and the time it took apart from the
-- gateway's own overhead.
ALTER TABLE audit_logs ADD COLUMN upstream_status INTEGER;
ALTER TABLE audit_logs ADD COLUMN upstream_us BIGINT;
