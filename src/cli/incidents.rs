//! `gatewatch incidents list|show|ack|resolve|prune`: the analysts' view of the store.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::db::{runtime, DbArgs};
use super::output::{escape_for_terminal, stored_incidents_table, write_csv};
use crate::clock::wall_clock;
use crate::detect::Incident;
use crate::query_text::{duration_before, QueryText};
use crate::store::{IncidentQuery, Store, StoredIncident, TriageState, MAX_PAGE};

#[derive(Subcommand, Debug)]
pub enum IncidentsCommand {
    /// List incidents, newest first (opens the database read-only).
    List(ListArgs),
    /// Show one incident in full, with its evidence lines (opens the database read-only).
    Show(ShowArgs),
    /// Mark an incident acknowledged (someone is on it).
    Ack(TriageArgs),
    /// Mark an incident resolved.
    Resolve(TriageArgs),
    /// Delete incidents last seen longer ago than a duration (needs --yes; keeps triaged ones
    /// unless --include-triaged).
    Prune(PruneArgs),
}

/// Filters of `incidents list`; the API takes the same names as query parameters.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Incidents still active at or after this: a duration before now (2h, 7d), a date
    /// (2026-11-20) or an RFC 3339 time. Times are the logs' event time.
    #[arg(long)]
    pub since: Option<String>,
    /// Incidents that started at or before this (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Detector id, e.g. rate-spike-ip.
    #[arg(long)]
    pub detector: Option<String>,
    /// Detector kind, e.g. rate_spike, scanner, brute_force.
    #[arg(long)]
    pub kind: Option<String>,
    /// An IP (also matches subnet incidents containing it), a CIDR (IPs inside it and subnets
    /// overlapping it), or any other entity exactly (token fingerprint, route).
    #[arg(long)]
    pub entity: Option<String>,
    /// At least this severe: low, medium, high, critical.
    #[arg(long)]
    pub severity: Option<String>,
    /// open or closed (the detector's view), or new, acknowledged, resolved (triage).
    #[arg(long)]
    pub status: Option<String>,
}

impl FilterArgs {
    /// The store query for up to `limit` incidents, with every bad value named.
    pub fn to_query(&self, limit: u32) -> Result<IncidentQuery, String> {
        let text = QueryText {
            since: self.since.clone(),
            until: self.until.clone(),
            detector: self.detector.clone(),
            kind: self.kind.clone(),
            entity: self.entity.clone(),
            severity: self.severity.clone(),
            status: self.status.clone(),
            limit: Some(limit.clamp(1, MAX_PAGE)),
            cursor: None,
        };
        text.to_query(wall_clock())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ListOutput {
    /// Aligned columns for people (log text escaped).
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line (the replay contract plus triage).
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Most incidents to print.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long, value_enum, default_value_t = ListOutput::Table)]
    output: ListOutput,
    /// Table: every field whole (full ids and times), however wide. Without it the table
    /// fits $COLUMNS (or the terminal), oldest first, long cells cut with `…`.
    #[arg(long)]
    wide: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ShowOutput {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Incident id, or a unique prefix of at least 4 digits.
    id: String,
    #[arg(long, value_enum, default_value_t = ShowOutput::Text)]
    output: ShowOutput,
}

#[derive(Args, Debug)]
pub struct TriageArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Incident id, or a unique prefix of at least 4 digits.
    id: String,
    /// Why (replaces an earlier note).
    #[arg(long)]
    note: Option<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Delete incidents last seen more than this long ago (event time), e.g. 30d.
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: std::time::Duration,
    /// Also delete acknowledged and resolved incidents (an analyst's triage and notes).
    #[arg(long)]
    include_triaged: bool,
    /// Delete: without it, prune only says how many incidents it would delete and exits 1.
    #[arg(long)]
    yes: bool,
}

pub fn run(command: IncidentsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            IncidentsCommand::List(args) => list(args).await,
            IncidentsCommand::Show(args) => show(args).await,
            IncidentsCommand::Ack(args) => triage(args, TriageState::Acknowledged).await,
            IncidentsCommand::Resolve(args) => triage(args, TriageState::Resolved).await,
            IncidentsCommand::Prune(args) => prune(args).await,
        }
    })
}

/// An id that no built-in detector has and no stored incident names is a typo (`scanner`
/// for `scanner-ip`): say so, with the ids there are, rather than list nothing.
async fn check_detector(store: &Store, detector: &str) -> anyhow::Result<()> {
    let mut known: Vec<String> = crate::detect::definition::with_builtins(None)
        .map(|defs| defs.into_iter().map(|d| d.id).collect())
        .unwrap_or_default();
    known.extend(store.stored_detectors().await?);
    known.sort();
    known.dedup();
    if known.iter().any(|id| id == detector) {
        return Ok(());
    }
    anyhow::bail!(
        "--detector {detector:?}: no such detector; known: {}",
        known.join(", ")
    )
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut query = args
        .filters
        .to_query(args.limit.min(MAX_PAGE))
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    query.with_evidence = matches!(args.output, ListOutput::Json | ListOutput::Jsonl);
    let store = args.db.open_read_only().await?;
    if let Some(detector) = &query.detector {
        check_detector(&store, detector).await?;
    }
    // Page through the store so --limit may exceed one page.
    let mut incidents: Vec<StoredIncident> = Vec::new();
    let mut more = false;
    loop {
        query.limit = (args.limit as usize - incidents.len()).min(MAX_PAGE as usize) as u32;
        if query.limit == 0 {
            break;
        }
        let page = store.list_incidents(&query).await?;
        incidents.extend(page.incidents);
        more = page.next.is_some();
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    store.close().await;
    let mut out = BufWriter::new(io::stdout().lock());
    match args.output {
        ListOutput::Table => {
            let width = super::table::terminal_width();
            for line in stored_incidents_table(&incidents, width, args.wide) {
                writeln!(out, "{line}")?;
            }
        }
        ListOutput::Json => {
            serde_json::to_writer_pretty(&mut out, &incidents)?;
            writeln!(out)?;
        }
        ListOutput::Jsonl => {
            for stored in &incidents {
                serde_json::to_writer(&mut out, stored)?;
                writeln!(out)?;
            }
        }
        ListOutput::Csv => write_csv(&mut out, &incidents)?,
    }
    out.flush()?;
    if more {
        eprintln!(
            "gatewatch incidents: more than {} incidents match; raise --limit or narrow the filters",
            args.limit
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = args.db.open_read_only().await?;
    let stored = store.get_incident(&args.id).await?;
    store.close().await;
    let mut out = io::stdout().lock();
    match args.output {
        ShowOutput::Json => {
            serde_json::to_writer_pretty(&mut out, &stored)?;
            writeln!(out)?;
        }
        ShowOutput::Text => write_detail(&mut out, &stored)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_detail(out: &mut impl Write, stored: &StoredIncident) -> io::Result<()> {
    let i = &stored.incident;
    let e = escape_for_terminal;
    writeln!(out, "id           {}", i.id)?;
    writeln!(out, "detector     {} ({})", e(&i.detector), e(&i.kind))?;
    writeln!(out, "severity     {}", i.severity.as_str())?;
    writeln!(out, "entity       {} {}", i.entity_kind, e(&i.entity))?;
    writeln!(out, "status       {}", i.status.as_str())?;
    writeln!(out, "triage       {}", stored.triage.state.as_str())?;
    if let Some(at) = &stored.triage.at {
        writeln!(out, "triaged at   {at}")?;
    }
    if let Some(note) = &stored.triage.note {
        writeln!(out, "note         {}", e(note))?;
    }
    writeln!(out, "started      {}", i.started_at.to_rfc3339_millis())?;
    writeln!(out, "detected     {}", i.detected_at.to_rfc3339_millis())?;
    writeln!(out, "last seen    {}", i.last_seen.to_rfc3339_millis())?;
    writeln!(out, "count        {}", i.count)?;
    write!(
        out,
        "score        observed {} expected {:.2}",
        i.score.observed, i.score.expected
    )?;
    match i.score.p_value {
        Some(p) => writeln!(out, " p {p:.3e}")?,
        None => writeln!(out)?,
    }
    writeln!(out, "summary      {}", e(&i.summary))?;
    write_explain(out, i)?;
    writeln!(out, "evidence")?;
    for evidence in &i.evidence {
        writeln!(
            out,
            "  {}  {}",
            evidence.ts.to_rfc3339_millis(),
            e(&evidence.line)
        )?;
    }
    Ok(())
}

/// Why it fired and what the entity did: the rule, then each tally as `count  value`.
fn write_explain(out: &mut impl Write, i: &Incident) -> io::Result<()> {
    let e = escape_for_terminal;
    if !i.explain.rule.is_empty() {
        writeln!(out, "rule         {}", e(&i.explain.rule))?;
    }
    let lists = [
        ("top paths", &i.explain.top_paths),
        ("statuses", &i.explain.statuses),
        ("user agents", &i.explain.user_agents),
        ("upstreams", &i.explain.upstreams),
    ];
    for (name, tallies) in lists {
        for (n, tally) in tallies.iter().enumerate() {
            let label = if n == 0 { name } else { "" };
            writeln!(out, "{label:<12} {:>7}  {}", tally.count, e(&tally.value))?;
        }
    }
    if !i.related.is_empty() {
        writeln!(out, "related      {}", e(&i.related.join(" ")))?;
    }
    Ok(())
}

async fn triage(args: TriageArgs, state: TriageState) -> anyhow::Result<ExitCode> {
    let store: Store = args.db.open_existing().await?;
    let id = store.resolve_id(&args.id).await?;
    store
        .set_triage(&id, state, args.note.as_deref())
        .await
        .with_context(|| format!("cannot mark {id} {}", state.as_str()))?;
    store.close().await;
    println!("{id} {}", state.as_str());
    Ok(ExitCode::SUCCESS)
}

async fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = args.db.open_existing().await?;
    let before = duration_before(wall_clock(), args.older_than);
    let cut = before.to_rfc3339_millis();
    let (doomed, kept) = store.prunable(before, args.include_triaged).await?;
    let kept_note = if kept > 0 {
        format!("; {kept} triaged (acknowledged or resolved) kept, --include-triaged deletes them")
    } else {
        String::new()
    };
    if !args.yes {
        store.close().await;
        anyhow::bail!(
            "prune would delete {doomed} incident(s) last seen before {cut}{kept_note}; \
             add --yes to delete them"
        );
    }
    let pruned = store.prune(before, args.include_triaged).await?;
    store.close().await;
    println!("pruned {pruned} incident(s) last seen before {cut}{kept_note}");
    Ok(ExitCode::SUCCESS)
}
