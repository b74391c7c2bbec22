//! What the store-facing commands share: the `--db` flag and an async runtime at the edge.

use clap::Args;

use crate::store::{redact_url, Store};

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
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
