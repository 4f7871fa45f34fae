-- The control plane: organisations, users, workspaces, agent accesses, policies, refresh tokens.
-- Ids are UUIDs as text and times are Unix milliseconds, the same in SQLite and PostgreSQL.
-- Deletes are soft (deleted_at); uniqueness holds among live rows only (partial unique indexes).

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX organisations_live_name ON organisations (name) WHERE deleted_at IS NULL;

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    password_hash   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE UNIQUE INDEX users_live_email ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX users_by_organisation ON users (organisation_id, created_at) WHERE deleted_at IS NULL;

CREATE TABLE workspaces (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    name            TEXT NOT NULL,
    environment     TEXT NOT NULL CHECK (environment IN ('production', 'staging', 'development')),
    upstream        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE UNIQUE INDEX workspaces_live_name ON workspaces (organisation_id, name) WHERE deleted_at IS NULL;

CREATE TABLE agent_accesses (
    id                       TEXT PRIMARY KEY,
    organisation_id          TEXT NOT NULL REFERENCES organisations (id),
    workspace_id             TEXT NOT NULL REFERENCES workspaces (id),
    name                     TEXT NOT NULL,
    key_prefix               TEXT NOT NULL,
    key_hash                 TEXT NOT NULL,
    previous_key_hash        TEXT,
    previous_key_valid_until BIGINT,
    created_at               BIGINT NOT NULL,
    rotated_at               BIGINT,
    expires_at               BIGINT,
    revoked_at               BIGINT,
    deleted_at               BIGINT
);
-- The proxy's lookup on every uncached key: by hash, current or previous.
CREATE UNIQUE INDEX agent_accesses_key_hash ON agent_accesses (key_hash);
CREATE INDEX agent_accesses_previous_key_hash ON agent_accesses (previous_key_hash)
    WHERE previous_key_hash IS NOT NULL;
CREATE UNIQUE INDEX agent_accesses_live_name ON agent_accesses (workspace_id, name) WHERE deleted_at IS NULL;
CREATE INDEX agent_accesses_by_organisation ON agent_accesses (organisation_id) WHERE deleted_at IS NULL;

CREATE TABLE policies (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    level           TEXT NOT NULL CHECK (level IN ('organisation', 'workspace', 'agent')),
    target_id       TEXT NOT NULL,
    document        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE UNIQUE INDEX policies_live_target ON policies (level, target_id) WHERE deleted_at IS NULL;
CREATE INDEX policies_by_organisation ON policies (organisation_id, created_at) WHERE deleted_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    family     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
