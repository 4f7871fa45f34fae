#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod agents;
mod approvals;
mod audit;
mod identity_providers;
mod organisations;
mod pins;
mod policies;
mod rows;
mod scoped;
mod tokens;
mod users;
mod workspaces;

use std::str::FromStr;
use std::time::Duration;

use cerberus_core::store::StoreError;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

pub use cerberus_core;

/// Which database a [`SqlStore`] speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: a file or memory, in this process.
    Sqlite,
    /// PostgreSQL: a server shared by every gateway instance.
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of_url(url: &str) -> Result<Self, ConnectError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(ConnectError::UnknownScheme(scheme.to_owned())),
        }
    }
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL names no supported database.
    #[error("unsupported database URL scheme `{0}:` (use sqlite: or postgres:)")]
    UnknownScheme(String),
    /// The URL names a backend this build leaves out.
    #[error("this build of cerberus has no {0} support (cargo feature `{0}`)")]
    NotBuiltIn(&'static str),
    /// The database refused or could not be reached.
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// The migrations, one set for both backends: the schema sticks to SQL both speak (text ids, integer
/// times, partial and expression indexes). A backend that needs its own statements will get its own
/// directory then.
static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The control-plane store on SQLite or PostgreSQL: implements every trait of
/// [`cerberus_core::store`].
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Opens the database at `url` (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let backend = Backend::of_url(url)?;
        match backend {
            Backend::Sqlite if !cfg!(feature = "sqlite") => {
                return Err(ConnectError::NotBuiltIn("sqlite"));
            }
            Backend::Postgres if !cfg!(feature = "postgres") => {
                return Err(ConnectError::NotBuiltIn("postgres"));
            }
            _ => {}
        }
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)
            .map_err(ConnectError::Open)?
            // Statements carry no secrets (they are bound), but a slow-query log is noise here.
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // An in-memory database lives as long as its one connection; a file database serialises
            // writers anyway, and SQLite enforces foreign keys only when asked, per connection.
            pool = pool.max_connections(if url.contains(":memory:") { 1 } else { 4 });
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            pool = pool.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *connection)
                        .await?;
                    // Write-ahead logging: readers do not block the writer, and a commit appends to
                    // the log instead of rewriting pages. `synchronous = NORMAL` syncs at checkpoints,
                    // not at every commit: a crash of the process loses nothing, a power cut may lose
                    // the last commits (SQLite's documented trade-off for WAL).
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *connection)
                        .await?;
                    Ok(())
                })
            });
        } else {
            pool = pool.max_connections(16);
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(ConnectError::Open)?;
        Ok(Self { pool, backend })
    }

    /// Applies the migrations this database lacks. On PostgreSQL an advisory lock makes concurrent
    /// callers (several instances starting at once) wait for each other.
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        MIGRATIONS
            .run(&self.pool)
            .await
            .map_err(ConnectError::Migrate)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for health checks.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl cerberus_core::store::StoreHealth for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(rows::store_error)
    }
}
