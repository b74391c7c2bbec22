//! `gatewatch alerts`: the outbox seen from the command line — what was delivered, what is
//! waiting or failed and why, sending again, and a test message to a channel.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::db::{runtime, DbArgs};
use super::output::escape_for_terminal;
use crate::alert::notice::Notice;
use crate::alert::send::Sender;
use crate::alert::slack;
use crate::clock::wall_clock;
use crate::config::{ChannelKind, Config};
use crate::store::{alert_state, AlertQuery, AlertRecord, Store};

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Deliveries, newest first, with their state, attempts and last answer.
    List(ListArgs),
    /// One delivery with its payload and the receiver's last answer.
    Show(ShowArgs),
    /// Send a failed delivery again, or every dead one.
    Retry(RetryArgs),
    /// Send a sample incident to a configured channel and print the receiver's answer.
    Test(TestArgs),
}

/// Where the outbox is: a config's `[store]`, or `--db`.
#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Take the store from this daemon config (`--db` is then ignored).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

impl StoreArgs {
    fn load_config(&self) -> anyhow::Result<Option<Config>> {
        self.config
            .as_deref()
            .map(super::run::load_config)
            .transpose()
    }

    async fn open(&self, config: Option<&Config>) -> anyhow::Result<Store> {
        match config {
            Some(config) => Store::open(&config.store_url)
                .await
                .with_context(|| format!("{}: [store]", config.path.display())),
            None => self.db.open_existing().await,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StateArg {
    Held,
    Pending,
    Sent,
    Failed,
    Dead,
    Digested,
}

impl StateArg {
    fn as_str(self) -> &'static str {
        match self {
            StateArg::Held => alert_state::HELD,
            StateArg::Pending => alert_state::PENDING,
            StateArg::Sent => alert_state::SENT,
            StateArg::Failed => alert_state::FAILED,
            StateArg::Dead => alert_state::DEAD,
            StateArg::Digested => alert_state::DIGESTED,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, value_enum)]
    status: Option<StateArg>,
    /// A configured channel name.
    #[arg(long)]
    channel: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The delivery's number (first column of `alerts list`).
    id: i64,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "dead"]))]
pub struct RetryArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A failed or dead delivery's number.
    id: Option<i64>,
    /// Every dead delivery.
    #[arg(long)]
    dead: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The daemon config that names the channel.
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
    /// The `[[alerts]]` name.
    #[arg(long)]
    channel: String,
}

pub fn run(command: AlertsCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match command {
        AlertsCommand::List(args) => rt.block_on(list(args)),
        AlertsCommand::Show(args) => rt.block_on(show(args)),
        AlertsCommand::Retry(args) => rt.block_on(retry(args)),
        AlertsCommand::Test(args) => rt.block_on(test(args)),
    }
}

fn when(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What a row is about: its incident, or how many a digest carries.
fn subject(record: &AlertRecord) -> String {
    match &record.incident_id {
        Some(id) => id.clone(),
        None if record.members == 1 => "1 incident".into(),
        None => format!("{} incidents", record.members),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let config = args.store.load_config()?;
    let store = args.store.open(config.as_ref()).await?;
    if let (Some(config), Some(channel)) = (&config, &args.channel) {
        if !config.alerts.iter().any(|c| &c.name == channel) {
            anyhow::bail!(
                "{}: no [[alerts]] channel named {channel:?}",
                config.path.display()
            );
        }
    }
    let records = store
        .list_alerts(&AlertQuery {
            state: args.status.map(|s| s.as_str().to_owned()),
            channel: args.channel.clone(),
            limit: i64::from(args.limit),
        })
        .await?;
    match print_list(&args, &records) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other?,
    }
    let counts = store.alert_counts().await?;
    let summary: Vec<String> = counts
        .iter()
        .filter(|(channel, _, _)| args.channel.as_ref().is_none_or(|c| c == channel))
        .map(|(channel, state, n)| format!("{}: {n} {state}", escape_for_terminal(channel)))
        .collect();
    if !summary.is_empty() && args.output == Output::Table {
        eprintln!("{}", summary.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The rows on stdout; a closed pipe (`| head`) ends it quietly.
fn print_list(args: &ListArgs, records: &[AlertRecord]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if args.output == Output::Json {
        for record in records {
            writeln!(out, "{}", serde_json::to_string(record)?)?;
        }
        return out.flush();
    }
    writeln!(
        out,
        "{:>6}  {:<12} {:<9} {:<10} {:<16} {:>4} {:>6}  {:<19}  LAST ERROR",
        "ID", "CHANNEL", "STATE", "EVENT", "INCIDENT", "TRY", "STATUS", "CREATED"
    )?;
    for r in records {
        writeln!(
            out,
            "{:>6}  {:<12} {:<9} {:<10} {:<16} {:>4} {:>6}  {:<19}  {}",
            r.id,
            escape_for_terminal(&r.channel),
            r.state,
            r.event,
            subject(r),
            r.attempts,
            r.last_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            when(r.created_at_wall_ns),
            escape_for_terminal(r.last_error.as_deref().unwrap_or("")),
        )?;
    }
    out.flush()
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let config = args.store.load_config()?;
    let store = args.store.open(config.as_ref()).await?;
    let Some(r) = store.alert(args.id).await? else {
        eprintln!("no delivery {} (see `gatewatch alerts list`)", args.id);
        return Ok(ExitCode::FAILURE);
    };
    println!("delivery   {}", r.id);
    println!("channel    {}", escape_for_terminal(&r.channel));
    println!(
        "webhook-id {}",
        crate::alert::send::webhook_id(&r.channel, &r.dedup_key)
    );
    println!("event      {} ({})", r.event, r.severity);
    println!("about      {}", subject(&r));
    println!("group      {}", escape_for_terminal(&r.group_key));
    println!("state      {}", r.state);
    if let Some(digest) = r.digest_id {
        println!("digest     {digest}");
    }
    println!("attempts   {}", r.attempts);
    println!("created    {}", when(r.created_at_wall_ns));
    if let Some(sent) = r.sent_at_wall_ns {
        println!("sent       {}", when(sent));
    } else if r.state == alert_state::PENDING {
        println!("next try   {}", when(r.next_attempt_wall_ns));
    }
    if let Some(status) = r.last_status {
        println!("status     {status}");
    }
    if let Some(error) = &r.last_error {
        println!("error      {}", escape_for_terminal(error));
    }
    if let Some(response) = r.response.as_deref().filter(|t| !t.is_empty()) {
        println!("response   {}", escape_for_terminal(response));
    }
    if let Some(payload) = &r.payload {
        // Re-encoded: JSON escapes every control character a log line could carry.
        let value: serde_json::Value =
            serde_json::from_str(payload).unwrap_or_else(|_| payload.as_str().into());
        println!("payload\n{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(args: RetryArgs) -> anyhow::Result<ExitCode> {
    let config = args.store.load_config()?;
    let store = args.store.open(config.as_ref()).await?;
    let now = wall_clock().nanos();
    let id = if args.dead { None } else { args.id };
    let n = store.retry_alerts(id, now).await?;
    match (id, n) {
        (Some(id), 0) => {
            eprintln!("delivery {id} is not failed or dead (see `gatewatch alerts show {id}`)");
            Ok(ExitCode::FAILURE)
        }
        (Some(id), _) => {
            println!("delivery {id} is pending again");
            Ok(ExitCode::SUCCESS)
        }
        (None, n) => {
            println!(
                "{n} dead {} pending again",
                if n == 1 {
                    "delivery is"
                } else {
                    "deliveries are"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A made-up incident in the contract's shape, marked as a test.
fn sample() -> Notice {
    let now = wall_clock().to_rfc3339_millis();
    Notice {
        event: "test".into(),
        id: "0000000000000000".into(),
        detector: "test".into(),
        kind: "test".into(),
        severity: "low".into(),
        entity_kind: "ip".into(),
        entity: "192.0.2.1".into(),
        started_at: now.clone(),
        detected_at: now.clone(),
        last_seen: now,
        count: 1,
        score: crate::alert::notice::NoticeScore {
            observed: 1.0,
            expected: 0.0,
            p_value: None,
        },
        summary: "a test message from gatewatch alerts test".into(),
        status: "open".into(),
        evidence: Vec::new(),
    }
}

async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let config = super::run::load_config(&args.config)?;
    let Some(channel) = config.alerts.iter().find(|c| c.name == args.channel) else {
        let names: Vec<&str> = config.alerts.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "{}: no [[alerts]] channel named {:?} (channels: {})",
            config.path.display(),
            args.channel,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    let notice = sample();
    let body = match channel.kind {
        ChannelKind::Slack => slack::message(&notice, channel.public_url.as_deref()).to_string(),
        ChannelKind::Webhook => serde_json::to_string(&notice)?,
    };
    let sender = Sender::new(channel.clone())?;
    let now = wall_clock();
    let id = format!("msg_test_{:016x}", fastrand::u64(..));
    eprintln!(
        "posting a sample incident to {} ({})",
        channel.name,
        channel.url.shown()
    );
    let answer = sender
        .post(&id, &body, now.nanos() / 1_000_000_000, now.nanos())
        .await;
    match (answer.status, &answer.error) {
        (Some(status), _) => {
            println!("HTTP {status}");
            if !answer.body.is_empty() {
                println!("{}", escape_for_terminal(&answer.body));
            }
            Ok(if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        (None, error) => {
            println!("no answer: {}", error.as_deref().unwrap_or("unknown error"));
            Ok(ExitCode::FAILURE)
        }
    }
}
