//! `gatewatch serve`: the HTTP API over a store, for analysts and dashboards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// File holding the bearer token /api/v1 requires (instead of GATEWATCH_API_TOKEN).
    #[arg(long, conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[arg(long, default_value = "GATEWATCH_API_TOKEN")]
    token_env: String,
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
    ApiToken::new(&text).with_context(|| {
        format!("{origin}: no API token (the API refuses to serve incidents without one)")
    })
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
        axum::serve(listener, api::router(store.clone(), token))
            .with_graceful_shutdown(shutdown_signal())
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
