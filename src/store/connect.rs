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

/// The URL with any password replaced (in the userinfo, or a `password=` parameter), for
/// every message and log line that shows a database URL.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{host}{tail}")
                }
                _ => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    format!("{key}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// The file of a `sqlite:` URL, before its parameters (`None` for other backends).
pub fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or_default())
}

/// Whether a command may change the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    ReadWrite,
    /// Listing and showing: a read-only file or directory is fine, nothing is migrated.
    ReadOnly,
}

/// The SQLite connection URL: created when missing (read-write) or opened read-only,
/// unless the URL sets its own `mode`.
fn sqlite_url(url: &str, access: Access) -> String {
    if url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let mode = match access {
        Access::ReadWrite => "rwc",
        Access::ReadOnly if cannot_change(url) => "ro&immutable=1",
        Access::ReadOnly => "ro",
    };
    format!("{url}{separator}mode={mode}")
}

/// A WAL database read-only needs its `-shm` file, which SQLite cannot create in a
/// directory we may not write. With no `-wal` there either, nobody is writing the database
/// (a writer keeps its `-wal` while it runs) and it can only be read as it is: immutable.
fn cannot_change(url: &str) -> bool {
    let Some(path) = sqlite_file(url).filter(|p| !p.is_empty()) else {
        return false;
    };
    let path = std::path::Path::new(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    !wal.exists() && !writable(dir)
}

fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

/// What SQLite would only call "unable to open database file": no file named, or a
/// directory that is not there.
fn check_sqlite_path(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    let unusable = |reason: String| StoreError::Unusable {
        url: redact_url(url),
        reason,
    };
    if path.is_empty() {
        return Err(unusable(
            "the SQLite URL names no file (sqlite://PATH)".into(),
        ));
    }
    if path == ":memory:" || url.contains("mode=memory") {
        return Ok(());
    }
    let dir = match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(unusable(format!(
            "directory {} does not exist",
            dir.display()
        )));
    }
    Ok(())
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

    /// For commands that only read (list, show): a SQLite file is opened read-only (so a
    /// read-only file or directory can be listed), nothing is migrated, and a schema older
    /// than this binary's is an error naming `gatewatch migrate`.
    pub async fn open_read_only(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect_with(url, Access::ReadOnly).await?;
        let pending = store.pending_migrations().await?;
        if pending > 0 {
            store.close().await;
            return Err(StoreError::Unusable {
                url: redact_url(url),
                reason: format!(
                    "its schema lacks {pending} migration(s) of this gatewatch; run \
                     `gatewatch migrate --db URL` first"
                ),
            });
        }
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, Access::ReadWrite).await
    }

    async fn connect_with(url: &str, access: Access) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact_url(url)))?;
        if backend == Backend::Sqlite {
            check_sqlite_path(url)?;
        }
        let connect_url = match backend {
            Backend::Sqlite => sqlite_url(url, access),
            Backend::Postgres => url.to_owned(),
        };
        let connect_error = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        let options: AnyConnectOptions = connect_url.parse().map_err(connect_error)?;
        if backend == Backend::Sqlite {
            // One connection first, so a file SQLite cannot open fails at once (not as a
            // pool timeout); journal_mode is a property of the file: set it once, here.
            let mut conn = AnyConnection::connect_with(&options)
                .await
                .map_err(connect_error)?;
            if access == Access::ReadWrite {
                conn.execute("PRAGMA journal_mode = WAL")
                    .await
                    .map_err(connect_error)?;
            }
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

    /// How many of this binary's migrations the database lacks (all of them when it has
    /// none): readiness and read-only commands need 0.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let embedded = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        self.ping().await?;
        Ok(embedded
            .len()
            .saturating_sub(self.applied_migrations().await))
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
        assert_eq!(
            redact_url("postgres://gw@db/gw?sslmode=require&password=s3cret"),
            "postgres://gw@db/gw?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgresql://u:pw@h/db?sslpassword=x&PASSWORD=y&user=u"),
            "postgresql://u:***@h/db?sslpassword=***&PASSWORD=***&user=u"
        );
        assert_eq!(
            redact_url("mysql://u:pw@h/db?password=pw"),
            "mysql://u:***@h/db?password=***"
        );
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
        assert_eq!(
            sqlite_url("sqlite://x.db", Access::ReadWrite),
            "sqlite://x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://x.db", Access::ReadOnly),
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            sqlite_url("sqlite://x.db?mode=ro", Access::ReadWrite),
            "sqlite://x.db?mode=ro"
        );
    }

    #[test]
    fn sqlite_paths_are_checked_before_sqlite_sees_them() {
        let reason = |url| match check_sqlite_path(url) {
            Err(StoreError::Unusable { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        assert!(reason("sqlite://").contains("names no file"));
        assert!(reason("sqlite://?mode=rwc").contains("names no file"));
        assert_eq!(
            reason("sqlite:///nonexistent-dir/x/gw.db"),
            "directory /nonexistent-dir/x does not exist"
        );
        assert!(check_sqlite_path("sqlite://gw.db").is_ok());
        assert!(check_sqlite_path("sqlite::memory:").is_ok());
        assert!(check_sqlite_path("postgres://h/db").is_ok());
    }
}
