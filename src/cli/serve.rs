//! `gatewatch serve`: the HTTP API over a store, for analysts and dashboards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::db::{runtime, DbArgs};
use crate::api::{self, ApiToken};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// File holding the bearer token /api/v1 requires, at least 16 characters (instead of
    /// GATEWATCH_API_TOKEN).
    #[arg(long, conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token (at least 16 characters).
    #[arg(long, default_value = "GATEWATCH_API_TOKEN")]
    token_env: String,
    /// Longest wait for a request's whole header, from the connection's accept (or from the
    /// first byte of a later request); then the connection is closed.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "10s")]
    header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "60s")]
    idle_timeout: Duration,
    /// Open connections at most (less if the open-file limit is lower); when full, the one
    /// waiting longest for a request is closed to make room for the new one.
    #[arg(long, value_name = "N", default_value_t = api::ServeSettings::default().max_connections as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

/// A timeout of zero would close every connection at once.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(err) => Err(err.to_string()),
    }
}

fn load_token(args: &ServeArgs) -> anyhow::Result<ApiToken> {
    read_token(args.token_file.as_deref(), &args.token_env)
}

/// The API token from a file, else from the environment variable `env_name`.
pub(super) fn read_token(
    file: Option<&std::path::Path>,
    env_name: &str,
) -> anyhow::Result<ApiToken> {
    let (text, origin) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?,
            format!("--token-file {}", path.display()),
        ),
        None => (
            std::env::var(env_name).unwrap_or_default(),
            format!("environment variable {env_name}"),
        ),
    };
    ApiToken::new(&text).map_err(|reason| anyhow::anyhow!("{origin}: {reason}"))
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let token = load_token(&args)?;
    runtime()?.block_on(async {
        let store = args.db.open().await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        eprintln!(
            "gatewatch serve: listening on http://{} (store {})",
            listener.local_addr()?,
            args.db.shown()
        );
        let settings = api::ServeSettings {
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections as usize,
        };
        api::serve(
            listener,
            api::router(store.clone(), token),
            settings,
            shutdown_signal(),
        )
        .await?;
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM (how Kubernetes stops a pod).
pub(super) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
