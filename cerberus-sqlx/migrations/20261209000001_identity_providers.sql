-- Identity providers an organisation trusts for OAuth access tokens, set through the admin API.
-- `settings` is the JSON of everything the admin set; its name and issuer are copied into columns of
-- their own, each unique in the organisation. Deleted for good, with their member policies.
CREATE TABLE identity_providers (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    name            TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    settings        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX identity_providers_name ON identity_providers (organisation_id, name);
CREATE UNIQUE INDEX identity_providers_issuer ON identity_providers (organisation_id, issuer);

-- Policies of one group (`kind` = 'group', `name` the group's) or one person (`kind` = 'person',
-- `name` their subject) of a provider.
CREATE TABLE identity_provider_members (
    identity_provider_id TEXT NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
    kind                 TEXT NOT NULL,
    name                 TEXT NOT NULL,
    document             TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (identity_provider_id, kind, name)
);
