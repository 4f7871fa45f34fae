//! The control plane (cargo feature `control-plane`): the database of organisations, users,
//! workspaces, agent accesses and policies (`[database]`), and what the gateway needs to serve the
//! admin API over it: access-token signing, the first owner, and telling the proxy about changes.

use std::sync::Arc;
use std::time::Duration;

use cerberus_core::store::{OrganisationStore, StoreError, UserStore};
use cerberus_sqlx::{ConnectError, SqlStore};
use serde::{Deserialize, Serialize};

use crate::admin::AdminSettings;
use crate::admin::credentials::{TokenIssuer, hash_password};
use crate::admin::error::ApiError;

/// The environment variable holding the access-token signing secret.
pub const JWT_SECRET_ENV: &str = "CERBERUS_JWT_SECRET";

/// The control-plane database (`[database]`): with one, agents, workspaces and policies come from it
/// (besides those in the configuration file) and the admin API is served.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSettings {
    /// `sqlite://cerberus.db?mode=rwc` (embedded), `sqlite::memory:`, or `postgres://…`.
    pub url: String,
    /// Whether to apply missing migrations at start-up (on PostgreSQL under an advisory lock).
    #[serde(default = "yes")]
    pub migrate: bool,
    /// How long the proxy trusts a key and policy it looked up, in milliseconds; admin changes made
    /// through this instance take effect at once, others within this time.
    #[serde(default = "default_cache_ttl_ms")]
    pub cache_ttl_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_cache_ttl_ms() -> u64 {
    500
}

impl DatabaseSettings {
    /// Settings for the database at `url`, migrated at start-up, with the default cache lifetime.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            migrate: true,
            cache_ttl_ms: default_cache_ttl_ms(),
        }
    }

    /// How long a looked-up key stays trusted.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }
}

/// Why the control plane cannot start, or a command on it cannot be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlPlaneError {
    /// The database cannot be opened or migrated.
    #[error("database.url")]
    Connect(#[source] ConnectError),
    /// The database failed.
    #[error("the control-plane database")]
    Store(#[source] StoreError),
    /// The access-token signing secret is too short.
    #[error("admin.jwt_secret ({JWT_SECRET_ENV}) must have at least 32 characters")]
    ShortJwtSecret,
    /// A new owner's password is too short, too long or easy to guess.
    #[error("the password {0}")]
    WeakPassword(String),
    /// The organisation cannot be created (its name is taken, say).
    #[error("cannot create organisation `{name}`")]
    CreateOrganisation {
        /// The organisation's name.
        name: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The password cannot be hashed.
    #[error("cannot hash the password")]
    Hash(#[source] ApiError),
}

/// Opens the control-plane database `settings` name, migrating it if they say so.
pub async fn open_store(settings: &DatabaseSettings) -> Result<Arc<SqlStore>, ControlPlaneError> {
    let store = SqlStore::connect(&settings.url)
        .await
        .map_err(ControlPlaneError::Connect)?;
    if settings.migrate {
        store.migrate().await.map_err(ControlPlaneError::Connect)?;
    }
    Ok(Arc::new(store))
}

/// The access-token issuer: the secret from [`JWT_SECRET_ENV`], else the settings', else a random
/// one (tokens then die with the process, which is logged).
pub fn token_issuer(settings: &AdminSettings) -> Result<TokenIssuer, ControlPlaneError> {
    let secret = match std::env::var(JWT_SECRET_ENV)
        .ok()
        .or_else(|| settings.jwt_secret.clone())
    {
        Some(secret) if secret.len() >= 32 => secret.into_bytes(),
        Some(_) => return Err(ControlPlaneError::ShortJwtSecret),
        None => {
            tracing::warn!(
                "no {JWT_SECRET_ENV}: admin tokens are signed with a random secret and end with this process"
            );
            let mut secret = vec![0u8; 32];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
            secret
        }
    };
    Ok(TokenIssuer::new(
        &secret,
        Duration::from_secs(settings.access_token_ttl_secs),
        Duration::from_secs(settings.refresh_token_ttl_secs),
    ))
}

/// The first owner, from `CERBERUS_BOOTSTRAP_ORGANISATION`, `_EMAIL` and `_PASSWORD`, when that user
/// does not exist yet: a way to start a fresh deployment without a default password.
pub async fn bootstrap_owner(store: &SqlStore) -> Result<(), ControlPlaneError> {
    let var = |name: &str| std::env::var(format!("CERBERUS_BOOTSTRAP_{name}")).ok();
    let (Some(organisation), Some(email), Some(password)) =
        (var("ORGANISATION"), var("EMAIL"), var("PASSWORD"))
    else {
        return Ok(());
    };
    if store
        .credentials(&email)
        .await
        .map_err(ControlPlaneError::Store)?
        .is_some()
    {
        return Ok(());
    }
    create_owner(store, &organisation, &email, password).await?;
    tracing::info!(%organisation, "created the first owner from the environment");
    Ok(())
}

/// Creates an organisation and its first owner (`cerberus admin create-user`).
pub async fn create_owner(
    store: &SqlStore,
    organisation: &str,
    email: &str,
    password: String,
) -> Result<(), ControlPlaneError> {
    if let Some(problem) =
        crate::admin::validate::password_problem(&password, &[email, organisation])
    {
        return Err(ControlPlaneError::WeakPassword(problem));
    }
    let hash = hash_password(password)
        .await
        .map_err(ControlPlaneError::Hash)?;
    store
        .create_organisation(organisation, email, &hash)
        .await
        .map_err(|source| ControlPlaneError::CreateOrganisation {
            name: organisation.to_owned(),
            source,
        })?;
    Ok(())
}
