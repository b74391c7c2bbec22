//! `gatewatch run --config FILE`: the daemon. Follows the configured log files through
//! rotation and restarts, runs them through the same pipeline as `replay`, stores incidents,
//! checkpoints what is processed, and serves the API, `/healthz`, `/readyz` and `/metrics`.
//!
//! Threads: a discovery thread finds files (globs, file-system events) and opens a source
//! per file; sources read and decode on the pipeline's threads; this thread runs the merge
//! and the engine; the store task, the API and the signal handler run on a small runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::format::FormatArgs;
use crate::alert::{Alerter, Routes, WorkerSettings};
use crate::config::{Config, TokenSource, WatchMode};
use crate::detect::{Engine, EngineSettings, IncidentEvent, StateRow};
use crate::event::Timestamp;
use crate::pipeline::{
    self, BatchStream, ClockSettings, DecodePool, Flow, IdleClock, Merge, ReadSpec, SavedState,
    Sink, StoreSink,
};
use crate::store::{Checkpoint, Router, WriterSettings};
use crate::tail::{Checkpoints, Discovery, FollowSettings, GroupSpec, Wakeup};

mod metrics;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The daemon's config file (see deploy/gatewatch.example.toml).
    #[arg(long, value_name = "FILE", env = "GATEWATCH_CONFIG")]
    config: PathBuf,
}

/// A file handed from the discovery to the merge.
struct NewFile {
    file: LiveFile,
    stream: Box<dyn BatchStream>,
}

/// What the merge knows of each of its sources beyond the pipeline's report.
struct LiveFile {
    group: usize,
    fingerprint: String,
    path: String,
    /// Where reading started (its checkpoint): the offset before any batch is processed.
    start: u64,
    /// The offset last saved.
    saved: u64,
    /// Whether it is still followed.
    tracked: Arc<crate::tail::Tracked>,
}

/// Loads the config (every problem at once), or says what is wrong.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|err| anyhow::anyhow!("invalid config:\n{err}"))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    super::init_logging(config.log_format, &config.log_level);
    let token = match &config.api.token {
        TokenSource::File(path) => super::serve::read_token(Some(path), ""),
        TokenSource::Env(name) => super::serve::read_token(None, name),
    }
    .with_context(|| format!("{}: [api]", config.path.display()))?;
    let defs = crate::detectors_dir::load(config.detectors_dir.as_deref())?;
    let writer = WriterSettings {
        alerts: (!config.alerts.is_empty())
            .then(|| Router(Arc::new(Routes::new(config.alerts.clone())))),
        ..WriterSettings::default()
    };
    let analyzer_writer = writer.clone();
    let mut store = StoreSink::open(&config.store_url, writer)
        .with_context(|| format!("{}: [store]", config.path.display()))?;
    let handle = store.handle();
    let cluster = match &config.cluster {
        Some(cluster) => Some(Arc::new(
            handle
                .block_on(crate::cluster::Cluster::connect(cluster))
                .with_context(|| format!("{}: [cluster]", config.path.display()))?,
        )),
        None => None,
    };
    // Agents of one cluster must fingerprint tokens alike: without a key file, they share
    // the key kept in the cluster's settings bucket.
    let token_key = match (&cluster, &config.token_key_file) {
        (Some(cluster), None) => handle
            .block_on(cluster.shared_token_key())
            .with_context(|| format!("{}: [cluster]", config.path.display()))?,
        _ => super::token_key(config.token_key_file.as_deref(), Some(&store))
            .with_context(|| format!("{}: tokens.key_file", config.path.display()))?,
    };
    let engine_settings = EngineSettings {
        warmup_nanos: nanos(config.warmup),
        token_key: token_key.clone(),
        ignore: config.ignore.clone(),
        ..EngineSettings::default()
    };
    // In cluster mode detection is the analyzers' (even in a process that is both): the
    // local engine only keeps the merge's clock.
    let mut engine = Engine::new(
        if cluster.is_some() { &[] } else { &defs },
        engine_settings.clone(),
    );
    // Deliveries left pending by an earlier run go out from the start.
    let (alerts_stop, alerts_stopping) = tokio::sync::watch::channel(false);
    let alerter = (!config.alerts.is_empty()).then(|| {
        let alerter = Alerter::new(
            store.store(),
            config.alerts.clone(),
            WorkerSettings::default(),
        );
        handle.spawn(alerter.run(alerts_stopping))
    });
    let saved = handle
        .block_on(store.store().load_checkpoints())
        .context("loading checkpoints")?;
    let rows = handle
        .block_on(store.store().load_state())
        .context("loading learned state")?;
    // What the store holds, so that saves write only what changed.
    let stored_state = SavedState::of(&rows);
    if !rows.is_empty() {
        let restored = engine.restore(rows);
        if restored.skipped > 0 {
            tracing::warn!(restored = restored.restored, skipped = restored.skipped, "learned state partly restored (rows of another version or of changed detectors re-learn)");
        } else {
            tracing::info!(restored = restored.restored, "learned state restored");
        }
    }
    let checkpoints: Checkpoints = saved
        .into_iter()
        .map(|c| {
            (
                (c.source, crate::tail::Fingerprint(c.fingerprint)),
                c.offset,
            )
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sources_open = Arc::new(AtomicBool::new(false));
    let metrics = metrics::Metrics::install()?;
    metrics.detectors(&engine);
    let listener = handle
        .block_on(tokio::net::TcpListener::bind(config.api.listen))
        .with_context(|| {
            format!(
                "{}: api.listen {}",
                config.path.display(),
                config.api.listen
            )
        })?;
    let listen = listener.local_addr()?;
    let router = crate::api::router_for(
        store.store(),
        token,
        crate::api::Daemon {
            sources_open: Some(sources_open.clone()),
            metrics: Some(metrics.renderer()),
        },
    );
    let serve_settings = crate::api::ServeSettings {
        header_timeout: config.api.header_timeout,
        idle_timeout: config.api.idle_timeout,
        max_connections: config.api.max_connections,
    };
    let server_stop = Arc::new(tokio::sync::Notify::new());
    let server = {
        let server_stop = server_stop.clone();
        handle.spawn(async move {
            crate::api::serve(listener, router, serve_settings, async move {
                server_stop.notified().await
            })
            .await
        })
    };
    {
        let stop = stop.clone();
        handle.spawn(async move {
            super::serve::shutdown_signal().await;
            tracing::info!("stopping: finishing what was read, then checkpointing");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let clock = ClockSettings {
        late_tolerance_nanos: nanos(config.late_tolerance),
        max_jump_nanos: nanos(config.max_time_jump),
        // Live lines cannot be from (far in) the future, however they agree.
        wall_clock: Some(now_wall),
    };
    let analyzer = match (&cluster, &config.cluster) {
        (Some(cluster), Some(settings)) if settings.role.analyzes() => {
            let analyzer_settings = crate::cluster::AnalyzerSettings {
                defs: defs.clone(),
                engine: engine_settings.clone(),
                clock,
                idle_timeout: config.tail.idle_timeout,
                checkpoint_interval: config.tail.checkpoint_interval,
                writer: analyzer_writer,
            };
            let stats = Arc::new(crate::cluster::AnalyzerStats::default());
            let thread = {
                let (cluster, handle, store_, url, stop, stats) = (
                    cluster.clone(),
                    handle.clone(),
                    store.store(),
                    store.url().to_owned(),
                    stop.clone(),
                    stats.clone(),
                );
                std::thread::Builder::new()
                    .name("analyzer".into())
                    .spawn(move || {
                        crate::cluster::analyzer::run(
                            cluster,
                            handle,
                            store_,
                            url,
                            analyzer_settings,
                            stop,
                            stats,
                        )
                    })?
            };
            Some((thread, stats))
        }
        _ => None,
    };
    if config.cluster.as_ref().is_some_and(|c| !c.role.tails()) {
        // An analyzer only: no files to follow.
        sources_open.store(true, Ordering::SeqCst);
        eprintln!(
            "gatewatch run: cluster analyzer {} listening on http://{listen} (store {})",
            config.cluster.as_ref().map_or("", |c| c.name.as_str()),
            store.url()
        );
        let (thread, stats) = analyzer.expect("an analyzer role starts one");
        while !thread.is_finished() {
            metrics::analyzer(&stats);
            std::thread::sleep(Duration::from_millis(500));
        }
        let result = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the analyzer panicked"))?;
        let _ = alerts_stop.send(true);
        if let Some(alerter) = alerter {
            let _ = handle
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), alerter).await });
        }
        server_stop.notify_waiters();
        let _ =
            handle.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
        let report = store.finish();
        result?;
        return Ok(if report.complete() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    tracing::info!(
        listen = %listen,
        store = %store.url(),
        sources = config.sources.len(),
        checkpoints = checkpoints.len(),
        "gatewatch run started"
    );
    eprintln!(
        "gatewatch run: listening on http://{listen} (store {}, {} source groups)",
        store.url(),
        config.sources.len()
    );

    let (new_files, arrivals) = mpsc::channel::<NewFile>();
    let discovery = spawn_discovery(
        &config,
        &engine,
        checkpoints,
        stop.clone(),
        new_files,
        sources_open.clone(),
    )?;

    let mut daemon = Daemon {
        config: &config,
        arrivals,
        files: Vec::new(),
        stop: stop.clone(),
        handle: handle.clone(),
        store: store.store(),
        saving: Arc::new(AtomicBool::new(false)),
        confirmed: Arc::default(),
        stored_state: Arc::new(std::sync::Mutex::new(stored_state)),
        last_checkpoint: now(),
        saved_events: 0,
        last_metrics: now(),
        idle: IdleClock::default(),
        metrics,
        store_probe: store.probe(),
        tail_stats: discovery,
        agent_stats: None,
        last_flush: now(),
    };
    let mut counter = OpenedCounter::default();
    let mut merge = Merge::new(Vec::new(), Vec::new(), clock);
    if let Some(cluster) = &cluster {
        let publisher = crate::cluster::Publisher::new(
            cluster.clone(),
            handle.clone(),
            token_key,
            stop.clone(),
        );
        daemon.agent_stats = Some(publisher.stats.clone());
        merge.set_tap(Box::new(publisher));
    }
    let result = {
        let mut sinks: Vec<&mut dyn Sink> = vec![&mut counter, &mut store];
        merge.run_live(
            &mut engine,
            &mut sinks,
            config.tail.idle_timeout,
            &mut |merge, engine| daemon.tick(merge, engine),
        )
    };
    // An agent's last events: checkpoints cover only what JetStream acknowledged.
    let published = merge.flush_tap();
    if let Err(err) = &published {
        tracing::error!(error = %format!("{err:#}"), "not every event was published; the lines since the last checkpoint are read again");
    }
    // Clean stop: what was processed is stored, then checkpointed; open incidents stay open
    // (they go on after the restart). One grace period for all of it, so a stop takes
    // well under 10 s (Kubernetes' default grace is 30 s) even with a slow store.
    let deadline = now() + Duration::from_secs(8);
    let left = || deadline.saturating_duration_since(now());
    let stored = store.wait_stored(left());
    {
        let mut sinks: Vec<&mut dyn Sink> = vec![&mut counter, &mut store];
        merge.refresh_durable(&mut sinks);
    }
    daemon.update_metrics(&merge, &engine);
    // Every source ended between batches and its events are stored: the state and the
    // offsets agree exactly. (A periodic save still under way finishes first.)
    while daemon.saving.load(Ordering::SeqCst) && !left().is_zero() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let changes = daemon
        .stored_state
        .lock()
        .expect("not poisoned")
        .changes(engine.snapshot());
    // (Not applied after the save: the process ends.)
    let last: Vec<Checkpoint> = if published.is_ok() {
        daemon
            .due_checkpoints(&merge)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    } else {
        Vec::new()
    };
    tracing::debug!(
        changed = changes.changed.len(),
        gone = changes.gone.len(),
        "saving the last checkpoints and state"
    );
    let saved = handle.block_on(async {
        tokio::time::timeout(
            left().max(Duration::from_millis(500)),
            store
                .store()
                .save_state_changes(&changes.changed, &changes.gone, &last),
        )
        .await
    });
    let _ = alerts_stop.send(true);
    if let Some(alerter) = alerter {
        let wait = left().clamp(Duration::from_millis(100), Duration::from_secs(2));
        match handle.block_on(async { tokio::time::timeout(wait, alerter).await }) {
            Ok(Ok(Err(err))) => tracing::error!(error = %err, "alert delivery failed"),
            Err(_) => tracing::warn!("alert delivery did not stop in time; its claims lapse"),
            _ => {}
        }
    }
    server_stop.notify_waiters();
    let wait = left().clamp(Duration::from_millis(100), Duration::from_secs(2));
    let _ = handle.block_on(async { tokio::time::timeout(wait, server).await });
    let analyzed = analyzer.map(|(thread, _)| {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the analyzer panicked"))
            .and_then(|r| r)
    });
    let report = store.finish();
    result?;
    let mut status = ExitCode::SUCCESS;
    if let Some(Err(err)) = analyzed {
        tracing::error!(error = %format!("{err:#}"), "the analyzer failed");
        status = ExitCode::FAILURE;
    }
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::error!(error = %err, "final checkpoints not saved; lines since the last save will be read again");
            status = ExitCode::FAILURE;
        }
        Err(_) => {
            tracing::error!(
                "final checkpoints not saved in time; lines since the last save will be read again"
            );
            status = ExitCode::FAILURE;
        }
    }
    if !stored || !report.complete() {
        tracing::error!(
            unstored = report.unstored,
            rejected = report.rejected,
            "not every incident event was stored before the stop"
        );
        status = ExitCode::FAILURE;
    }
    tracing::info!(
        files = merge.len(),
        lines = (0..merge.len()).map(|i| merge.report(i).lines).sum::<u64>(),
        events = merge.events(),
        "gatewatch run stopped"
    );
    Ok(status)
}

fn nanos(duration: Duration) -> i64 {
    duration.as_nanos().min(i64::MAX as u128) as i64
}

/// The wall clock, for intervals (checkpoints, metrics, how long the logs were quiet).
#[allow(clippy::disallowed_methods)] // the daemon's timers are wall-clock by nature
fn now() -> Instant {
    Instant::now()
}

fn now_wall() -> Timestamp {
    crate::clock::wall_clock()
}

/// Starts the discovery thread; returns the rotation counters it shares.
fn spawn_discovery(
    config: &Config,
    engine: &Engine,
    checkpoints: Checkpoints,
    stop: Arc<AtomicBool>,
    new_files: mpsc::Sender<NewFile>,
    sources_open: Arc<AtomicBool>,
) -> anyhow::Result<Arc<crate::tail::TailStats>> {
    let groups: Vec<GroupSpec> = config
        .sources
        .iter()
        .map(|s| GroupSpec {
            name: s.name.clone(),
            patterns: s.paths.clone(),
            start_at: s.start_at,
        })
        .collect();
    let depth = pipeline::PipelineSettings::default().depth;
    let specs: Vec<ReadSpec> = config
        .sources
        .iter()
        .map(|source| {
            let format = FormatArgs::from_config(source);
            let mut read = pipeline::read_spec(
                Arc::new(move |sample: &[&[u8]]| format.choose(sample)),
                source.trusted_proxies.clone(),
                pipeline::chunk_bytes_for(8, depth, source.max_line_bytes),
                source.max_line_bytes,
            );
            read.path_match = Some(engine.path_match());
            read
        })
        .collect();
    let poll = config.tail.poll_interval;
    let follow = FollowSettings {
        poll,
        // About a second of quiet after a rotation before the old file is let go.
        drain_polls: (Duration::from_secs(1).as_millis() / poll.as_millis().max(1)).max(2) as u32,
    };
    let mut discovery = Discovery::new(groups, checkpoints, stop.clone(), follow);
    let stats = discovery.stats.clone();
    let patterns: Vec<String> = config
        .sources
        .iter()
        .flat_map(|s| s.paths.clone())
        .collect();
    let watch = config.tail.watch;
    let interval = config.tail.discover_interval;
    let threads = pipeline::PipelineSettings::default().threads;
    std::thread::Builder::new()
        .name("gatewatch-discover".into())
        .spawn(move || {
            let wakeup = match watch {
                WatchMode::Auto => Wakeup::watch(&patterns),
                WatchMode::Poll => Wakeup::poll(),
            };
            tracing::info!(events = wakeup.is_watching(), "discovering files");
            let pool = DecodePool::new(threads);
            loop {
                for found in discovery.scan() {
                    let start = found.input.offset;
                    let stream = pool.source(found.input, specs[found.group].clone(), depth);
                    let file = NewFile {
                        file: LiveFile {
                            group: found.group,
                            fingerprint: found.fingerprint.0,
                            path: found.path.display().to_string(),
                            start,
                            saved: start,
                            tracked: found.tracked,
                        },
                        stream: Box::new(stream),
                    };
                    if new_files.send(file).is_err() {
                        return;
                    }
                }
                sources_open.store(true, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // A file seen before its first line was complete sends no further event
                // when that line comes: looked at again soon, not after the whole interval.
                let wait = if discovery.has_pending() {
                    interval.min(poll.max(Duration::from_millis(200)))
                } else {
                    interval
                };
                wakeup.wait(wait);
            }
        })
        .context("starting the discovery thread")?;
    Ok(stats)
}

struct Daemon<'a> {
    config: &'a Config,
    arrivals: mpsc::Receiver<NewFile>,
    files: Vec<LiveFile>,
    stop: Arc<AtomicBool>,
    handle: tokio::runtime::Handle,
    store: crate::store::Store,
    /// A checkpoint save is in flight (one at a time; the next carries the newest offsets).
    saving: Arc<AtomicBool>,
    /// (file index, offset) of saves that succeeded.
    confirmed: Arc<std::sync::Mutex<Vec<(usize, u64)>>>,
    /// The learned state as last saved (replaced when a save succeeds).
    stored_state: Arc<std::sync::Mutex<SavedState>>,
    last_checkpoint: Instant,
    /// Incident events when state was last saved.
    saved_events: u64,
    last_metrics: Instant,
    idle: IdleClock,
    metrics: metrics::Metrics,
    store_probe: pipeline::StoreProbe,
    tail_stats: Arc<crate::tail::TailStats>,
    /// A cluster agent's publishing counters.
    agent_stats: Option<Arc<crate::cluster::AgentStats>>,
    last_flush: Instant,
}

impl Daemon<'_> {
    /// Called by the merge after each batch and while the logs are quiet.
    fn tick(&mut self, merge: &mut Merge, engine: &mut Engine) -> Flow {
        while let Ok(NewFile { file, stream }) = self.arrivals.try_recv() {
            let index = merge.add(file.path.clone(), stream);
            debug_assert_eq!(index, self.files.len());
            if let Some(publisher) = merge
                .tap()
                .and_then(|tap| tap.as_any().downcast_mut::<crate::cluster::Publisher>())
            {
                // Its fingerprint, not its path: ids must survive renames and restarts.
                publisher.name_source(index, file.fingerprint.clone());
            }
            self.files.push(file);
        }
        let at = now();
        let since = at.duration_since(self.last_checkpoint);
        let interval = self.config.tail.checkpoint_interval;
        // A cluster agent: what was merged is published and acknowledged before any
        // checkpoint below can cover it (and every 20 ms anyway, for a short delay; flushing
        // after every batch made messages of a few events each).
        let checkpoint_due = since >= interval && !self.saving.load(Ordering::SeqCst);
        if (checkpoint_due || at.duration_since(self.last_flush) >= Duration::from_millis(20))
            && merge.tap().is_some()
        {
            self.last_flush = at;
            if let Err(err) = merge.flush_tap() {
                tracing::warn!(error = %format!("{err:#}"), "publishing to JetStream failed");
                return if self.stop.load(Ordering::SeqCst) {
                    Flow::Stop
                } else {
                    Flow::Continue
                };
            }
        }
        self.idle.tick(engine, at);
        // Saved where no source is part-way through a batch, so the state matches the
        // offsets exactly; under traffic that never pauses, after a while anyway.
        // (Decided once, above: an agent's flush came first.)
        if checkpoint_due && (merge.at_rest() || since >= interval * 5) {
            self.last_checkpoint = at;
            let due = self.due_checkpoints(merge);
            if !due.is_empty() || merge.events() != self.saved_events {
                self.saved_events = merge.events();
                let started = now();
                let rows = engine.snapshot();
                tracing::debug!(took = ?started.elapsed(), rows = rows.len(), "state snapshot taken");
                self.save(rows, due, merge.events());
            }
        }
        if at.duration_since(self.last_metrics) >= Duration::from_secs(1) {
            self.last_metrics = at;
            self.update_metrics(merge, engine);
        }
        if self.stop.load(Ordering::SeqCst) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Checkpoints that moved since they were last saved, with their file's index.
    fn due_checkpoints(&mut self, merge: &Merge) -> Vec<(usize, Checkpoint)> {
        for (index, offset) in self.confirmed.lock().expect("not poisoned").drain(..) {
            let file = &mut self.files[index];
            file.saved = file.saved.max(offset);
        }
        let mut due = Vec::new();
        for (i, file) in self.files.iter().enumerate() {
            // Processed, not committed: the state saved with these offsets has seen exactly
            // these lines, and the save waits for their events to be stored.
            let offset = merge.processed_offset(i).max(file.start);
            if offset > file.saved {
                due.push((
                    i,
                    Checkpoint {
                        source: self.config.sources[file.group].name.clone(),
                        fingerprint: file.fingerprint.clone(),
                        path: file.path.clone(),
                        offset,
                    },
                ));
            }
        }
        due
    }

    /// Saves learned state with the offsets it matches, in the background, once the
    /// events up to `events` are stored; one save at a time. A failed save is retried with
    /// the next round's state and offsets (offsets only grow).
    fn save(&mut self, rows: Vec<StateRow>, due: Vec<(usize, Checkpoint)>, events: u64) {
        self.saving.store(true, Ordering::SeqCst);
        let store = self.store.clone();
        let saving = self.saving.clone();
        let confirmed = self.confirmed.clone();
        let stored_state = self.stored_state.clone();
        let errors = self.metrics.checkpoint_errors();
        let probe = self.store_probe.clone();
        self.handle.spawn(async move {
            // The diff is half a second for 300,000 rows: off the engine's thread, and off
            // the runtime's. Only this task touches the stored state while `saving`.
            let diff = {
                let stored_state = stored_state.clone();
                tokio::task::spawn_blocking(move || {
                    stored_state.lock().expect("not poisoned").changes(rows)
                })
            };
            probe.stored(events).await;
            let Ok(changes) = diff.await else {
                saving.store(false, Ordering::SeqCst);
                return;
            };
            let (indexes, checkpoints): (Vec<usize>, Vec<Checkpoint>) = due.into_iter().unzip();
            let started = now();
            let saved = store
                .save_state_changes(&changes.changed, &changes.gone, &checkpoints)
                .await;
            tracing::debug!(
                changed = changes.changed.len(),
                gone = changes.gone.len(),
                took = ?started.elapsed(),
                ok = saved.is_ok(),
                "checkpoints and state saved"
            );
            match saved {
                Ok(()) => {
                    // A failed save leaves the old one: the next diff carries its changes too.
                    let apply = tokio::task::spawn_blocking(move || {
                        stored_state.lock().expect("not poisoned").apply(&changes)
                    });
                    let _ = apply.await;
                    confirmed.lock().expect("not poisoned").extend(
                        indexes
                            .into_iter()
                            .zip(checkpoints.iter().map(|c| c.offset)),
                    )
                }
                Err(err) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "saving checkpoints and learned state failed; will retry");
                }
            }
            saving.store(false, Ordering::SeqCst);
        });
    }

    fn update_metrics(&self, merge: &Merge, engine: &Engine) {
        let files: Vec<metrics::FileView> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| metrics::FileView {
                group: self.config.sources[f.group].name.as_str(),
                path: &f.path,
                active: f.tracked.active.load(Ordering::Relaxed),
                processed: merge.processed_offset(i).max(f.start),
            })
            .collect();
        self.metrics
            .pipeline(merge, engine, &files, &self.tail_stats, now_wall());
        self.metrics.store(&self.store_probe);
        if let Some(stats) = &self.agent_stats {
            metrics::agent(stats);
        }
    }
}

/// Counts incidents opened per detector (a metric) and logs each.
#[derive(Default)]
struct OpenedCounter {
    accepted: u64,
    opened: HashMap<String, u64>,
}

impl Sink for OpenedCounter {
    fn accept(&mut self, seq: u64, event: &IncidentEvent) -> anyhow::Result<()> {
        self.accepted = seq;
        if let IncidentEvent::Opened(incident) = event {
            *self.opened.entry(incident.detector.clone()).or_default() += 1;
            ::metrics::counter!("gatewatch_incidents_opened_total", "detector" => incident.detector.clone())
                .increment(1);
            // Debug formatting escapes whatever the log put into the entity.
            tracing::info!(id = %incident.id, detector = %incident.detector, severity = incident.severity.as_str(), entity = ?incident.entity, "incident opened");
        }
        Ok(())
    }

    fn durable(&mut self) -> u64 {
        self.accepted
    }
}
