use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL {0}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// Found wrong before connecting (no file named, a missing directory, an old schema).
    #[error("cannot open database {url}: {reason}")]
    Unusable { url: String, reason: String },
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored row is not valid: {0}")]
    BadRow(String),
    #[error("no incident with id {0}")]
    NotFound(String),
    #[error("id prefix {0} matches several incidents; give more digits")]
    Ambiguous(String),
    #[error("id prefix {0} is too short: give at least 4 hex digits of the id")]
    ShortId(String),
}

impl StoreError {
    /// True when retrying later may succeed (the database is down, busy or restarting);
    /// false when the same statement would fail again (bad data, schema mismatch).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Query(err) | StoreError::Connect { source: err, .. } => {
                is_transient_sqlx(err)
            }
            _ => false,
        }
    }
}

fn is_transient_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), insufficient resources (53), operator
            // intervention such as a restart (57), serialization failures and deadlocks (40).
            // SQLite: BUSY (5) and LOCKED (6), with their extended codes.
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || matches!(code.parse::<u32>().map(|c| c & 0xff), Ok(5 | 6))
        }
        _ => false,
    }
}
