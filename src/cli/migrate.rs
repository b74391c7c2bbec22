//! `gatewatch migrate --db URL`: bring a database to this binary's schema.

use std::process::ExitCode;

use clap::Args;

use super::db::{runtime, DbArgs};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    db: DbArgs,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::connect(&args.db.url).await?;
        let applied = store.migrate().await?;
        store.close().await;
        println!(
            "{}: {applied} migration(s) applied, schema up to date",
            args.db.shown()
        );
        Ok(ExitCode::SUCCESS)
    })
}
