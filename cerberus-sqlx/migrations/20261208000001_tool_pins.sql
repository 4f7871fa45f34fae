-- Pinned tool definitions, per workspace and tool: the definition pinned (first seen, or approved by
-- an admin) and the one the workspace's server listed last. Definitions are canonical JSON of the
-- pinned members; fingerprints their SHA-256 in hex. Not tied to the workspaces table: the
-- configuration file's workspaces have pins too.
CREATE TABLE tool_pins (
    organisation_id     TEXT NOT NULL,
    workspace_id        TEXT NOT NULL,
    tool                TEXT NOT NULL,
    pinned_fingerprint  TEXT,
    pinned_definition   TEXT,
    pinned_at           BIGINT,
    approved_by         TEXT,
    listed_fingerprint  TEXT NOT NULL,
    listed_definition   TEXT NOT NULL,
    listed_at           BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, workspace_id, tool)
);

-- Workspaces that have seen a complete listing: from then on a new tool is not pinned as first seen.
CREATE TABLE tool_pin_workspaces (
    organisation_id TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    completed_at    BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, workspace_id)
);
