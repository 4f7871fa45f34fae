//! Fresh databases for tests: a SQLite file in a temporary directory, or a PostgreSQL database of its
//! own on the server at `CERBERUS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! A test that needs PostgreSQL fails, loudly, when the server cannot be reached.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use cerberus_sqlx::{Backend, SqlStore};

/// The server the PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CERBERUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Both backends, for tests that must hold on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A database that exists for one test.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    backend: Backend,
    name: String,
    _directory: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Creates an empty database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        let name = format!("cerberus_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir().unwrap();
                let path = directory.path().join(format!("{name}.db"));
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    backend,
                    name,
                    _directory: Some(directory),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = SqlStore::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for this test and is not reachable at {admin_url} \
                         (set CERBERUS_TEST_POSTGRES_URL): {e}"
                    )
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .unwrap();
                admin.pool().close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                Self {
                    url: format!("{base}/{name}"),
                    backend,
                    name,
                    _directory: None,
                }
            }
        }
    }

    /// A migrated store on it.
    pub async fn store(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Removes the database (PostgreSQL; a SQLite file goes with its directory).
    pub async fn drop_database(self) {
        if self.backend == Backend::Postgres {
            let admin = SqlStore::connect(&postgres_admin_url()).await.unwrap();
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(admin.pool())
            .await
            .unwrap();
            admin.pool().close().await;
        }
    }
}
