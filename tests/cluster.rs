//! Cluster mode end to end: a NATS JetStream server of the test's own (`nats-server -js` on a
//! free port), agents tailing real files, analyzers sharing one store, all as real
//! `gatewatch run` processes. Skipped, loudly, when `nats-server` is not installed.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::receiver::free_port;

const TOKEN: &str = "cluster-test-api-token-0123456789";
const PATIENCE: Duration = Duration::from_secs(180);

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        status.success()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JetStream server of our own, on a free port, storing in `dir`.
fn start_nats(dir: &Path) -> Option<(Process, u16)> {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v nats-server"])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        });
    let Some(binary) = binary else {
        eprintln!("SKIPPED: nats-server is not installed (Debian package nats-server), so the cluster tests did not run");
        return None;
    };
    let port = free_port();
    let store = dir.join("nats");
    fs::create_dir_all(&store).unwrap();
    let log = dir.join("nats.log");
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start nats-server");
    let process = Process { child, log };
    eventually("nats-server accepts connections", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some((process, port))
}

/// The wall clock, to compare with the analyzers' log times.
#[allow(clippy::disallowed_methods)] // measuring a takeover, not detecting
fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..(PATIENCE.as_millis() / 200) {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {PATIENCE:?}");
}

fn token_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("token.key");
    fs::write(&path, "cluster-tests-key").unwrap();
    path
}

/// A member's config: `sources` is a glob for agents, `None` for analyzers.
fn member_config(
    dir: &Path,
    name: &str,
    role: &str,
    nats: u16,
    store_url: &str,
    sources: Option<&str>,
) -> PathBuf {
    let sources = sources
        .map(|glob| {
            format!("[[sources]]\nname = \"web\"\npaths = [{glob:?}]\nformat = \"combined\"\n")
        })
        .unwrap_or_default();
    let text = format!(
        "[tokens]\nkey_file = {:?}\n\
         {sources}\
         [store]\nurl = {store_url:?}\n\
         [api]\nlisten = \"127.0.0.1:{}\"\n\
         [tail]\npoll_interval = \"50ms\"\ndiscover_interval = \"300ms\"\nidle_timeout = \"2s\"\n\
         checkpoint_interval = \"1s\"\n\
         [cluster]\nnats_url = \"nats://127.0.0.1:{nats}\"\nstream = \"gwtest\"\npartitions = 8\n\
         role = \"{role}\"\nname_env = \"MEMBER\"\n",
        dir.join("token.key").display().to_string(),
        free_port(),
    );
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, text).unwrap();
    path
}

fn start_member(config: &Path, name: &str) -> Process {
    let log = config.with_extension(format!("{}.stderr", free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("GATEWATCH_API_TOKEN", TOKEN)
        .env("MEMBER", name)
        .env("GATEWATCH_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start gatewatch run");
    Process { child, log }
}

fn attacks_log() -> Vec<u8> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(File::open("testdata/nginx-combined-attacks.log.gz").unwrap())
        .read_to_end(&mut text)
        .unwrap();
    text
}

/// (id, detector, entity) of what replay finds in `path`.
fn replayed(path: &Path, key: &Path) -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "replay",
            "--no-progress",
            "--output",
            "jsonl",
            "--token-key-file",
        ])
        .arg(key)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut found: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["detector"].as_str().unwrap().to_string(),
                v["entity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// (id, detector, entity) of every stored incident, as a list (a duplicate would show).
fn stored(url: &str) -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args([
            "incidents",
            "list",
            "--output",
            "json",
            "--limit",
            "5000",
            "--db",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["detector"].as_str().unwrap().to_string(),
                v["entity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// Per detector family, the records the partitions' saved states hold (summed over
/// partitions): what was analysed exactly once, durably.
fn analysed(url: &str) -> [u64; 4] {
    let checkpoints = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = gatewatch::store::Store::open(url).await.unwrap();
            store.load_checkpoints().await.unwrap()
        });
    let mut sums = [0u64; 4];
    for c in checkpoints {
        for (i, family) in ["address", "token", "route", "global"].iter().enumerate() {
            if c.source.starts_with('p') && c.fingerprint == format!("_analysed_{family}") {
                sums[i] += c.offset;
            }
        }
    }
    sums
}

/// The lines dealt round-robin to `n` files (every attacker spread over all of them).
fn deal(text: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut parts = vec![Vec::new(); n];
    for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        parts[i % n].extend_from_slice(line);
    }
    parts
}

/// The attacks log with one more attacker: 24 failed logins in two minutes from one
/// address, dealt so that each of three nodes sees 8 (under the brute-force bar of 10 in
/// 120 s) and the whole sees 24. Returns the whole log and the three nodes' parts.
fn with_a_spread_brute_force(text: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let attempt = |k: usize| {
        let secs = 22 * 60 + k * 5;
        format!(
            "203.0.113.77 - - [20/Nov/2026:09:{:02}:{:02} +0000] \"POST /login HTTP/1.1\" 401 64 \"-\" \"python-requests/2.31\"\n",
            secs / 60,
            secs % 60
        )
    };
    let stamp = |line: &[u8]| -> String {
        let text = String::from_utf8_lossy(line);
        text.split('[')
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(20)
            .collect()
    };
    let mut whole = Vec::new();
    let mut parts = vec![Vec::new(); 3];
    let mut next = 0;
    for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        while next < 24 && stamp(attempt(next).as_bytes()) <= stamp(line) {
            whole.extend_from_slice(attempt(next).as_bytes());
            parts[next % 3].extend_from_slice(attempt(next).as_bytes());
            next += 1;
        }
        whole.extend_from_slice(line);
        parts[i % 3].extend_from_slice(line);
    }
    assert_eq!(next, 24, "the log covers 09:22 to 09:24");
    (whole, parts)
}

/// The store every analyzer shares: PostgreSQL when the test server is named, else one
/// SQLite file.
fn shared_store(dir: &Path) -> (String, Option<common::TestDb>) {
    match common::TestDb::postgres("cluster mode on PostgreSQL (SQLite used instead)") {
        Some(db) => (db.url.clone(), Some(db)),
        None => (
            format!("sqlite://{}", dir.join("shared.db").display()),
            None,
        ),
    }
}

/// Which detectors judge a key against a population of keys (the busy end of all clients):
/// a partition sees one in `partitions` of the keys and weights its samples, so its
/// reference is an estimate of the whole's, and near the bar an incident can differ.
const POPULATION_DETECTORS: [&str; 3] = ["rate-spike-ip", "rate-spike-subnet", "rate-spike-route"];

/// Compares what the cluster stored with what replay of the whole log found: the same
/// incidents (same ids: detector, entity, start) for every detector that judges each key on
/// its own, none replay does not find, and no incident twice.
fn assert_same_incidents(
    found: &[(String, String, String)],
    expected: &[(String, String, String)],
    logs: &str,
) {
    let unique: BTreeSet<_> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "no incident stored twice");
    // A population detector's episode may open a bucket earlier or later than replay's
    // near its bar (the exchanged populations lag), which gives it another id: it is still
    // replay's incident when replay flags the same entity by the same detector.
    let replay_flags = |(_, detector, entity): &&(String, String, String)| {
        POPULATION_DETECTORS.contains(&detector.as_str())
            && (expected.iter()).any(|(_, d, e)| d == detector && e == entity)
    };
    let (shifted, extra): (Vec<_>, Vec<_>) = (found.iter())
        .filter(|i| !expected.contains(i))
        .partition(replay_flags);
    assert!(
        extra.is_empty(),
        "incidents replay does not find: {extra:?}\nreplay: {expected:?}\n{logs}"
    );
    if !shifted.is_empty() {
        eprintln!(
            "cluster: population-referenced, opened at another time than replay's: {shifted:?}"
        );
    }
    let own = |list: &[(String, String, String)]| -> Vec<(String, String, String)> {
        list.iter()
            .filter(|(_, d, _)| !POPULATION_DETECTORS.contains(&d.as_str()))
            .cloned()
            .collect()
    };
    assert_eq!(
        own(found),
        own(expected),
        "per-key detectors: the cluster's incidents are replay's\n{logs}"
    );
    let missed: Vec<_> = expected.iter().filter(|i| !found.contains(i)).collect();
    eprintln!(
        "cluster: {} of replay's {} incidents; missed (population-referenced, near the bar): {missed:?}",
        found.len(),
        expected.len()
    );
}

struct Cluster {
    dir: tempfile::TempDir,
    _nats: Process,
    nats: u16,
    key: PathBuf,
    url: String,
    _db: Option<common::TestDb>,
    analyzers: Vec<Process>,
    agents: Vec<Process>,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let (nats_process, nats) = start_nats(dir.path())?;
        let key = token_key_file(dir.path());
        let (url, db) = shared_store(dir.path());
        let mut cluster = Cluster {
            dir,
            _nats: nats_process,
            nats,
            key,
            url,
            _db: db,
            analyzers: Vec::new(),
            agents: Vec::new(),
        };
        for i in 0..2 {
            let name = format!("analyzer-{i}");
            let config = member_config(
                cluster.dir.path(),
                &name,
                "analyzer",
                nats,
                &cluster.url,
                None,
            );
            let analyzer = start_member(&config, &name);
            // One at a time: two processes migrating one new SQLite file race.
            eventually("the analyzer opened its store", || {
                analyzer.log_text().contains("listening on")
            });
            cluster.analyzers.push(analyzer);
        }
        Some(cluster)
    }

    fn node_log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}")).join("access.log")
    }

    fn start_agent(&self, i: usize) -> Process {
        let logs = self.dir.path().join(format!("node-{i}"));
        fs::create_dir_all(&logs).unwrap();
        let name = format!("agent-{i}");
        let store = format!("sqlite://{}/agent.db", logs.display());
        let glob = format!("{}/*.log", logs.display());
        start_member(
            &member_config(
                self.dir.path(),
                &name,
                "agent",
                self.nats,
                &store,
                Some(&glob),
            ),
            &name,
        )
    }

    fn logs(&self) -> String {
        self.analyzers
            .iter()
            .chain(&self.agents)
            .map(|p| p.log_text())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn three_agents_and_two_analyzers_find_what_replay_of_the_whole_log_finds() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let (text, thirds) = with_a_spread_brute_force(&attacks_log());
    let whole = cluster.dir.path().join("whole.log");
    fs::write(&whole, &text).unwrap();
    let expected = replayed(&whole, &cluster.key);
    assert!(expected.len() >= 6, "the attacks log has incidents");
    let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
    for (i, part) in thirds.iter().enumerate() {
        fs::create_dir_all(cluster.node_log(i).parent().unwrap()).unwrap();
        fs::write(cluster.node_log(i), part).unwrap();
        let agent = cluster.start_agent(i);
        cluster.agents.push(agent);
    }
    let url = cluster.url.clone();
    eventually("every line analysed by its address partition", || {
        analysed(&url)[0] >= lines
    });
    std::thread::sleep(Duration::from_secs(1));
    let counts = analysed(&url);
    assert_eq!(
        counts[0],
        lines,
        "each line once in an address partition\n{}",
        cluster.logs()
    );
    assert_eq!(counts[3], lines, "each line once in the global partition");
    assert_same_incidents(&stored(&url), &expected, &cluster.logs());

    // One node's third alone: the attackers spread over three nodes stay under the bars.
    let third = cluster.dir.path().join("third.log");
    fs::write(&third, &thirds[0]).unwrap();
    let pairs = |list: &[(String, String, String)]| -> BTreeSet<(String, String)> {
        list.iter()
            .map(|(_, d, e)| (d.clone(), e.clone()))
            .collect()
    };
    let alone = pairs(&replayed(&third, &cluster.key));
    let found = pairs(&stored(&url));
    let missed: Vec<_> = found.difference(&alone).collect();
    assert!(
        missed.contains(&&("brute-force-ip".to_string(), "203.0.113.77".to_string())),
        "a single node's third misses the spread brute force the cluster finds: {missed:?}"
    );
    eprintln!("a single agent on its third misses {missed:?}");
    for process in cluster
        .analyzers
        .iter_mut()
        .chain(cluster.agents.iter_mut())
    {
        assert!(process.stop(), "a clean stop\n{}", process.log_text());
    }
}

#[test]
fn a_killed_analyzer_and_a_killed_agent_lose_and_double_nothing() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let text = attacks_log();
    let whole = cluster.dir.path().join("whole.log");
    fs::write(&whole, &text).unwrap();
    let expected = replayed(&whole, &cluster.key);
    let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
    let thirds = deal(&text, 3);
    let chunks: Vec<Vec<&[u8]>> = thirds
        .iter()
        .map(|part| {
            let lines: Vec<&[u8]> = part.split_inclusive(|b| *b == b'\n').collect();
            lines
                .chunks(2000)
                .map(|c| c.concat().leak() as &[u8])
                .collect()
        })
        .collect();
    for i in 0..3 {
        fs::create_dir_all(cluster.node_log(i).parent().unwrap()).unwrap();
        fs::write(cluster.node_log(i), b"").unwrap();
        let agent = cluster.start_agent(i);
        cluster.agents.push(agent);
    }
    let url = cluster.url.clone();
    let rounds = chunks.iter().map(Vec::len).max().unwrap();
    let mut killed_at = None;
    for round in 0..rounds {
        for (i, node) in chunks.iter().enumerate() {
            if let Some(chunk) = node.get(round) {
                append(&cluster.node_log(i), chunk);
            }
        }
        std::thread::sleep(Duration::from_millis(150));
        if round == rounds / 3 {
            // An analyzer dies mid-run: the other takes its partitions over.
            cluster.analyzers[0].kill_hard();
            killed_at = Some(wall_clock());
        }
        if round == rounds / 2 {
            // An agent dies mid-run and comes back: it re-reads from its checkpoint.
            cluster.agents[1].kill_hard();
            std::thread::sleep(Duration::from_millis(300));
            cluster.agents[1] = cluster.start_agent(1);
        }
    }
    eventually("every line analysed by its address partition", || {
        analysed(&url)[0] >= lines
    });
    std::thread::sleep(Duration::from_secs(2));
    let counts = analysed(&url);
    assert_eq!(
        counts,
        [counts[0], counts[1], counts[2], lines],
        "each line once in the global partition"
    );
    assert_eq!(
        counts[0],
        lines,
        "each line once in an address partition\n{}",
        cluster.logs()
    );
    assert_same_incidents(&stored(&url), &expected, &cluster.logs());
    let survivor = cluster.analyzers[1].log_text();
    assert!(
        survivor.matches("partition taken").count() > 4,
        "the surviving analyzer took partitions over\n{survivor}"
    );
    // Measured, not asserted: how long the dead analyzer's partitions went unowned.
    let killed_at = killed_at.expect("the analyzer was killed");
    let taken_after: Vec<chrono::DateTime<chrono::Utc>> = (survivor.lines())
        .filter(|line| line.contains("partition taken"))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .filter(|at| *at > killed_at)
        .collect();
    if let Some(last) = taken_after.iter().max() {
        let _ = writeln!(
            std::io::stderr(),
            "takeover: {} partitions taken over, the last {:.1} s after the kill",
            taken_after.len(),
            (*last - killed_at).num_milliseconds() as f64 / 1000.0
        );
    }
}
