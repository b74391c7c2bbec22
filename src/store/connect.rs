//! Opening a store: URL → backend, pool, SQLite pragmas, embedded migrations.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyConnection, Connection, Executor};

use super::{Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The URL with any password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// A SQLite file is created when missing unless the URL sets its own `mode`.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// One migration file: version, description, SQL. Keep versions equal to the file prefixes.
macro_rules! migration {
    ($dir:literal, $version:literal, $description:literal, $file:literal) => {
        (
            $version,
            $description,
            include_str!(concat!("../../migrations/", $dir, "/", $file)),
        )
    };
}

type Embedded = &'static [(i64, &'static str, &'static str)];
const SQLITE_MIGRATIONS: Embedded = &[
    migration!("sqlite", 1, "init", "0001_init.sql"),
    migration!("sqlite", 2, "alert outbox", "0002_alert_outbox.sql"),
    migration!("sqlite", 3, "explain", "0003_explain.sql"),
    migration!("sqlite", 4, "settings", "0004_settings.sql"),
];
const POSTGRES_MIGRATIONS: Embedded = &[
    migration!("postgres", 1, "init", "0001_init.sql"),
    migration!("postgres", 2, "alert outbox", "0002_alert_outbox.sql"),
    migration!("postgres", 3, "explain", "0003_explain.sql"),
    migration!("postgres", 4, "settings", "0004_settings.sql"),
];

/// The schema compiled into the binary, so a deployed gatewatch needs no migrations folder.
#[derive(Debug)]
struct EmbeddedMigrations(Embedded);

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>>
    {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// How long a caller waits for a pooled connection before the attempt counts as failed (the
/// writer then queues and retries).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects and applies pending migrations. A SQLite file is created if missing and put in
    /// WAL mode, so readers (the CLI, the API) never block the writer.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact_url(url)))?;
        let connect_url = match backend {
            Backend::Sqlite => sqlite_url(url),
            Backend::Postgres => url.to_owned(),
        };
        let connect_error = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        let options: AnyConnectOptions = connect_url.parse().map_err(connect_error)?;
        if backend == Backend::Sqlite {
            // journal_mode is a property of the file: set it once, before the pool opens.
            let mut conn = AnyConnection::connect_with(&options)
                .await
                .map_err(connect_error)?;
            conn.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(connect_error)?;
            conn.close().await.map_err(connect_error)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Durable at every checkpoint, not every commit: WAL keeps it consistent.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(Store { pool, backend })
    }

    /// Applies the migrations this binary knows and the database lacks; returns how many
    /// ran. Concurrent instances on PostgreSQL serialise on sqlx's advisory lock.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let embedded = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrate_error = |source| StoreError::Migrate {
            url: self.backend.name().to_owned(),
            source,
        };
        let migrator = Migrator::new(EmbeddedMigrations(embedded))
            .await
            .map_err(migrate_error)?;
        let before = self.applied_migrations().await;
        migrator.run(&self.pool).await.map_err(migrate_error)?;
        Ok(embedded.len().saturating_sub(before))
    }

    async fn applied_migrations(&self) -> usize {
        // The table is absent before the first migration.
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map(|n| n as usize)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://gw:s3cret@db:5432/gw?sslmode=require"),
            "postgres://gw:***@db:5432/gw?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://gw.db"), "sqlite://gw.db");
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
        assert_eq!(sqlite_url("sqlite://x.db"), "sqlite://x.db?mode=rwc");
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
    }
}
