//! What the store-facing commands share: the `--db` flag and an async runtime at the edge.

use clap::Args;

use crate::store::{redact_url, Store};

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (created if missing by the commands that write) or
    /// postgres://USER@HOST/DB (a password is never shown).
    #[arg(
        long = "db",
        value_name = "URL",
        env = "GATEWATCH_DB",
        // The URL may hold a password: never print the variable's value in --help.
        hide_env_values = true,
        default_value = "sqlite://gatewatch.db"
    )]
    pub url: String,
}

impl DbArgs {
    /// Opens (and migrates) the store.
    pub async fn open(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.url).await?)
    }

    /// Opens a store that must exist already: the analysts' commands never create an empty
    /// SQLite file for a mistyped path (which would then answer "no incidents").
    pub async fn open_existing(&self) -> anyhow::Result<Store> {
        self.check_exists()?;
        self.open().await
    }

    /// As `open_existing`, for commands that only read: nothing is migrated or written, so a
    /// read-only database (file or directory) can be listed.
    pub async fn open_read_only(&self) -> anyhow::Result<Store> {
        self.check_exists()?;
        Ok(Store::open_read_only(&self.url).await?)
    }

    fn check_exists(&self) -> anyhow::Result<()> {
        if let Some(path) = sqlite_path(&self.url)? {
            if !std::path::Path::new(path).exists() {
                anyhow::bail!(
                    "no database at {path} (--db {}): nothing was stored there; \
                     `gatewatch replay --db URL FILE` or `gatewatch migrate --db URL` creates one",
                    self.shown()
                );
            }
        }
        Ok(())
    }

    pub fn shown(&self) -> String {
        redact_url(&self.url)
    }
}

/// The runtime for commands that talk to a database or serve HTTP; the parsing and detection
/// core stays synchronous.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The file of a `sqlite:` URL (`None` for other backends and in-memory databases).
fn sqlite_path(url: &str) -> anyhow::Result<Option<&str>> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        anyhow::bail!(
            "--db {}: the SQLite URL names no file (sqlite://PATH)",
            redact_url(url)
        );
    }
    Ok((path != ":memory:").then_some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found_in_their_urls() {
        assert_eq!(sqlite_path("sqlite://a/b.db").unwrap(), Some("a/b.db"));
        assert_eq!(
            sqlite_path("sqlite:///var/g.db?mode=ro").unwrap(),
            Some("/var/g.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:").unwrap(), None);
        assert_eq!(sqlite_path("postgres://u@h/db").unwrap(), None);
        assert!(sqlite_path("sqlite://").is_err());
    }
}
