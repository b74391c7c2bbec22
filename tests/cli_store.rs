//! End-to-end tests of the store-facing commands: `replay --db`, `incidents …`, `migrate`,
//! `serve`, on a real SQLite file and the real PostgreSQL server.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use common::TestDb;

const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";
const EVAL_DATASET: &str = "../shared/eval/data/public-traefik-json/access.log.gz";

fn gatewatch(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GATEWATCH_DB")
        .env_remove("GATEWATCH_API_TOKEN")
        // Tables fit $COLUMNS: unset, they print whole (as to a pipe).
        .env_remove("COLUMNS")
        .output()
        .expect("binary runs");
    output
}

fn ok(args: &[&str]) -> String {
    let output = gatewatch(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Stored incidents in the replay contract: sorted by id, without the triage the store adds.
fn stored_incidents(url: &str) -> Vec<Value> {
    let mut stored = json_lines(&ok(&[
        "incidents",
        "list",
        "--db",
        url,
        "--output",
        "jsonl",
        "--limit",
        "100000",
    ]));
    for incident in &mut stored {
        let triage = incident.as_object_mut().unwrap().remove("triage");
        assert_eq!(triage.unwrap()["state"], "new");
    }
    by_id(stored)
}

fn by_id(mut incidents: Vec<Value>) -> Vec<Value> {
    incidents.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    incidents
}

/// One replay prints incidents and stores them; the store must hold exactly what was printed.
fn assert_replay_stores_what_it_prints(log: &str, url: &str) -> usize {
    let printed = by_id(json_lines(&ok(&["replay", log, "--db", url])));
    assert!(!printed.is_empty(), "{log} should produce incidents");
    assert_eq!(stored_incidents(url), printed);
    printed.len()
}

#[test]
fn replay_db_sqlite_stores_exactly_the_printed_incidents() {
    let db = TestDb::sqlite();
    assert_replay_stores_what_it_prints(ATTACK_LOG, &db.url);
    // Replaying again upserts the same episodes: nothing doubles.
    assert_replay_stores_what_it_prints(ATTACK_LOG, &db.url);
}

#[test]
fn replay_db_keeps_storing_when_stdout_closes() {
    let db = TestDb::sqlite();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["replay", ATTACK_LOG, "--db", &db.url])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`: every write to stdout fails
    let run = child.wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let reference = TestDb::sqlite();
    let printed = by_id(json_lines(&ok(&[
        "replay",
        ATTACK_LOG,
        "--db",
        &reference.url,
    ])));
    assert_eq!(stored_incidents(&db.url), printed);
}

#[test]
fn replay_db_sqlite_of_an_eval_dataset_matches_jsonl() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EVAL_DATASET);
    if !path.exists() {
        common::say_missing(&path);
        return;
    }
    let db = TestDb::sqlite();
    let n = assert_replay_stores_what_it_prints(path.to_str().unwrap(), &db.url);
    assert!(
        n >= 4,
        "the dataset has at least four labelled attacks, got {n}"
    );
}

#[test]
fn replay_db_postgres_stores_exactly_the_printed_incidents() {
    let Some(db) =
        TestDb::postgres("cli_store::replay_db_postgres_stores_exactly_the_printed_incidents")
    else {
        return;
    };
    assert_replay_stores_what_it_prints(ATTACK_LOG, &db.url);
}

#[test]
fn two_concurrent_replays_into_postgres_store_each_incident_once() {
    let Some(db) = TestDb::postgres(
        "cli_store::two_concurrent_replays_into_postgres_store_each_incident_once",
    ) else {
        return;
    };
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["replay", ATTACK_LOG, "--db", &db.url])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Both start together, migrate the fresh database together and write the same episodes.
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for run in [&a, &b] {
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let printed = by_id(json_lines(std::str::from_utf8(&a.stdout).unwrap()));
    assert_eq!(
        printed,
        by_id(json_lines(std::str::from_utf8(&b.stdout).unwrap()))
    );
    assert_eq!(stored_incidents(&db.url), printed);
}

#[test]
fn analysts_list_filter_triage_and_prune() {
    let db = TestDb::sqlite();
    let printed = by_id(json_lines(&ok(&["replay", ATTACK_LOG, "--db", &db.url])));
    let attacker = printed[0]["entity"].as_str().unwrap().to_owned();
    let id = printed[0]["id"].as_str().unwrap().to_owned();

    // Table: a header and a row per incident.
    let table = ok(&["incidents", "list", "--db", &db.url]);
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), printed.len() + 1);
    // Entity filter (the attacker's /24 holds it), JSON array output.
    let cidr = format!("{attacker}/24");
    let listed: Vec<Value> = serde_json::from_str(&ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--entity",
        &cidr,
        "--output",
        "json",
    ]))
    .unwrap();
    let expected = printed
        .iter()
        .filter(|i| i["entity"] == attacker.as_str())
        .count();
    assert!(listed.len() >= expected && expected >= 1);
    assert!(listed
        .iter()
        .all(|i| i["evidence"].as_array().is_some_and(|e| !e.is_empty())));
    // CSV: header plus rows.
    let csv = ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--output",
        "csv",
        "--detector",
        "rate-spike-ip",
    ]);
    assert!(csv.starts_with("id,detector,kind,severity,"), "{csv}");
    let rate_spikes = printed
        .iter()
        .filter(|i| i["detector"] == "rate-spike-ip")
        .count();
    assert_eq!(csv.lines().count(), rate_spikes + 1);
    // Bad filters are named.
    let bad = gatewatch(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--severity",
        "extreme",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--severity: \"extreme\""));

    // show by prefix, ack with a note, filter by triage state, resolve.
    let shown = ok(&["incidents", "show", "--db", &db.url, &id[..8]]);
    assert!(shown.contains(&id) && shown.contains("evidence"), "{shown}");
    assert_eq!(
        ok(&[
            "incidents",
            "ack",
            "--db",
            &db.url,
            &id[..8],
            "--note",
            "on it"
        ])
        .trim(),
        format!("{id} acknowledged")
    );
    let acked = json_lines(&ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--status",
        "ack",
        "--output",
        "jsonl",
    ]));
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0]["triage"]["note"], "on it");
    ok(&["incidents", "resolve", "--db", &db.url, &id]);
    let shown: Value = serde_json::from_str(&ok(&[
        "incidents",
        "show",
        "--db",
        &db.url,
        &id,
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(shown["triage"]["state"], "resolved");
    let missing = gatewatch(&["incidents", "show", "--db", &db.url, "0123456789abcdef"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no incident with id 0123456789abcdef")
    );

    // The log's events are days old: a long horizon keeps them, a short one prunes all but
    // the resolved one, and only with --yes.
    assert!(ok(&[
        "incidents",
        "prune",
        "--db",
        &db.url,
        "--older-than",
        "36500d",
        "--yes"
    ])
    .starts_with("pruned 0 "));
    let asked = gatewatch(&["incidents", "prune", "--db", &db.url, "--older-than", "0s"]);
    assert_eq!(asked.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(
        stderr.contains(&format!(
            "prune would delete {} incident(s) last seen before",
            printed.len() - 1
        )) && stderr.contains("1 triaged (acknowledged or resolved) kept")
            && stderr.contains("add --yes to delete them"),
        "{stderr}"
    );
    assert_eq!(
        ok(&["incidents", "list", "--db", &db.url]).lines().count(),
        printed.len() + 1,
        "nothing deleted without --yes"
    );
    let pruned = ok(&[
        "incidents",
        "prune",
        "--db",
        &db.url,
        "--older-than",
        "0s",
        "--yes",
    ]);
    assert!(
        pruned.starts_with(&format!("pruned {} ", printed.len() - 1))
            && pruned.contains("--include-triaged deletes them"),
        "{pruned}"
    );
    let left = json_lines(&ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--output",
        "jsonl",
    ]));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], id.as_str());
    assert_eq!(left[0]["triage"]["state"], "resolved");
    let pruned = ok(&[
        "incidents",
        "prune",
        "--db",
        &db.url,
        "--older-than",
        "0s",
        "--include-triaged",
        "--yes",
    ]);
    assert!(pruned.starts_with("pruned 1 "), "{pruned}");
    assert_eq!(
        ok(&["incidents", "list", "--db", &db.url]).lines().count(),
        1
    );
}

#[tokio::test]
async fn terminal_output_escapes_hostile_log_text() {
    use gatewatch::detect::{Evidence, Incident, Score, Severity, Status};
    use gatewatch::event::{EntityKind, Timestamp};
    let db = TestDb::sqlite();
    let store = gatewatch::store::Store::open(&db.url).await.unwrap();
    let hostile = Incident {
        id: "00aa00aa00aa00aa".into(),
        detector: "scanner-ip".into(),
        kind: "scanner".into(),
        severity: Severity::High,
        entity_kind: EntityKind::Route,
        entity: "=cmd|' /C calc'!A0".into(),
        started_at: Timestamp(1),
        detected_at: Timestamp(2),
        last_seen: Timestamp(3),
        count: 1,
        score: Score {
            observed: 1.0,
            expected: 0.0,
            p_value: None,
        },
        summary: "agent \u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m \u{202e}nimda\u{202c}\u{2028}forged"
            .into(),
        status: Status::Open,
        evidence: vec![Evidence::new(
            Timestamp(2),
            "GET /\x1b[31mred\x1b[0m/\u{2066}\u{202e}gpj.exe\u{2069}\u{2029} HTTP/1.1".as_bytes(),
        )],
        explain: Default::default(),
        related: Vec::new(),
    };
    store.upsert_incidents(&[hostile]).await.unwrap();
    store.close().await;
    for args in [
        vec!["incidents", "list", "--db", &db.url],
        vec!["incidents", "show", "--db", &db.url, "00aa00aa"],
        vec!["incidents", "list", "--db", &db.url, "--output", "csv"],
    ] {
        let out = ok(&args);
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r'),
            "{args:?} printed a control character: {out:?}"
        );
        assert!(out.contains("\\u{1b}[2J"), "{out}");
        // Bidi controls and separators reorder or split what the analyst reads.
        let layout = [
            '\u{202e}', '\u{202c}', '\u{2028}', '\u{2029}', '\u{2066}', '\u{2069}',
        ];
        assert!(
            !out.contains(layout),
            "{args:?} printed a bidi control or separator: {out:?}"
        );
        assert!(
            out.contains("\\u{202e}nimda\\u{202c}\\u{2028}forged"),
            "{out}"
        );
    }
    let csv = ok(&["incidents", "list", "--db", &db.url, "--output", "csv"]);
    assert!(csv.contains(",'=cmd|"), "a formula is defused: {csv}");
    let shown = ok(&["incidents", "show", "--db", &db.url, "00aa00aa"]);
    assert!(
        shown.contains("\\u{2066}\\u{202e}gpj.exe\\u{2069}\\u{2029}"),
        "evidence escaped: {shown}"
    );
}

#[test]
fn migrate_applies_once_and_bad_urls_are_named() {
    let db = TestDb::sqlite();
    // Every migration the binary carries (migrations/sqlite/*.sql), then none.
    let carried = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    let first = ok(&["migrate", "--db", &db.url]);
    assert!(
        first.contains(&format!(": {carried} migration(s) applied")),
        "{first}"
    );
    assert!(ok(&["migrate", "--db", &db.url]).contains(": 0 migration(s) applied"));
    let bad = gatewatch(&["replay", ATTACK_LOG, "--db", "mysql://u:pw@h/db"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("unsupported database URL mysql://u:***@h/db"),
        "{stderr}"
    );
    // A command that creates its database names the one it cannot create; a read-only one
    // names the file that is not there.
    let unreachable = gatewatch(&["migrate", "--db", "sqlite:///nonexistent-dir/x/gw.db"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains(
            "cannot open database sqlite:///nonexistent-dir/x/gw.db: \
             directory /nonexistent-dir/x does not exist"
        ) && !stderr.contains("code: 14"),
        "{stderr}"
    );
    let replay = gatewatch(&["replay", ATTACK_LOG, "--db", "sqlite://no-such-dir/gw.db"]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&replay.stderr).contains("directory no-such-dir does not exist"),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let missing = gatewatch(&[
        "incidents",
        "list",
        "--db",
        "sqlite:///nonexistent-dir/x/gw.db",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("no database at /nonexistent-dir/x/gw.db"));
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let db = TestDb::sqlite();
    let out = gatewatch(&["serve", "--db", &db.url, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GATEWATCH_API_TOKEN") && stderr.contains("no API token"),
        "{stderr}"
    );
}

#[test]
fn short_api_tokens_are_refused_naming_where_they_came_from() {
    let db = TestDb::sqlite();
    let serve = |token_env: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["serve", "--db", &db.url, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("GATEWATCH_API_TOKEN", token_env)
            .output()
            .unwrap()
    };
    let out = serve("hunter2", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "environment variable GATEWATCH_API_TOKEN: the API token is 7 characters long; \
             at least 16 are required"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the token was printed: {stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "x\n").unwrap();
    let out = serve("", &["--token-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--token-file {}: the API token is 1 characters long",
            file.display()
        )),
        "{stderr}"
    );
    // The daemon says which config and section.
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\npaths = [\"{}/*.log\"]\n[store]\nurl = \"{}\"\n[api]\n\
             listen = \"127.0.0.1:0\"\ntoken_env = \"GW_SHORT_TOKEN\"\n",
            dir.path().display(),
            db.url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("GW_SHORT_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: [api]", config.display()))
            && stderr.contains("environment variable GW_SHORT_TOKEN: the API token is 5"),
        "{stderr}"
    );
}

#[test]
fn database_passwords_are_never_printed() {
    // Port 1: nothing listens, so every command fails and says which database.
    for url in [
        "postgres://gw:hunter2@127.0.0.1:1/gw",
        "postgres://gw@127.0.0.1:1/gw?sslmode=disable&password=hunter2",
        "postgresql://gw:hunter2@127.0.0.1:1/gw?password=hunter2",
    ] {
        for args in [
            vec!["incidents", "list", "--db", url],
            vec!["incidents", "prune", "--older-than", "1d", "--db", url],
            vec!["migrate", "--db", url],
            vec!["replay", ATTACK_LOG, "--db", url, "--output", "none"],
            vec!["alerts", "list", "--db", url],
        ] {
            let out = gatewatch(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !text.contains("hunter2"),
                "{args:?} printed the password: {text}"
            );
            assert!(
                text.contains("***@127.0.0.1:1/gw") || text.contains("password=***"),
                "{args:?}: {text}"
            );
        }
    }
}

#[test]
fn an_empty_sqlite_path_fails_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let attack_log = Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG);
    for args in [
        vec!["replay", attack_log.to_str().unwrap(), "--db", "sqlite://"],
        vec!["migrate", "--db", "sqlite://"],
        vec!["migrate", "--db", "sqlite://?mode=rwc"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(&args)
            .current_dir(dir.path())
            .env_remove("GATEWATCH_DB")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("the SQLite URL names no file (sqlite://PATH)"),
            "{args:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed incidents before failing"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

/// Runs gatewatch as a user who may not write `db`'s files: as root (who may write
/// anything), as `nobody`.
fn gatewatch_reader(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    command
        .args(args)
        .current_dir("/")
        .env_remove("GATEWATCH_DB");
    if unsafe_geteuid() == 0 {
        command.uid(65534).gid(65534);
    }
    command.output().unwrap()
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn read_only_databases_can_be_listed_and_shown() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("g.db");
    let url = format!("sqlite://{}", path.display());
    let printed = by_id(json_lines(&ok(&["replay", ATTACK_LOG, "--db", &url])));
    let id = printed[0]["id"].as_str().unwrap().to_owned();
    let read_only = |mode: u32| {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let check = |case: &str| {
        let listed = gatewatch_reader(&["incidents", "list", "--db", &url]);
        assert!(
            listed.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).lines().count(),
            printed.len() + 1,
            "{case}"
        );
        let shown = gatewatch_reader(&["incidents", "show", &id[..8], "--db", &url]);
        assert!(
            shown.status.success() && String::from_utf8_lossy(&shown.stdout).contains(&id),
            "{case}: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        // Writing is still refused, loudly.
        let acked = gatewatch_reader(&["incidents", "ack", &id[..8], "--db", &url]);
        assert_eq!(acked.status.code(), Some(1), "{case}");
        assert!(
            String::from_utf8_lossy(&acked.stderr).contains("readonly database"),
            "{case}"
        );
    };
    // Files 0444 in a read-only directory, as the writer left them (with -wal and -shm).
    read_only(0o555);
    check("read-only directory, WAL files present");
    // Checkpointed and closed: only the database file, which SQLite cannot give a -shm.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    checkpoint(&url);
    assert!(!dir.join("g.db-wal").exists());
    read_only(0o555);
    check("read-only directory, database file only");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Folds the WAL into the database and closes, as a clean last close does.
fn checkpoint(url: &str) {
    use sqlx::Connection as _;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
}

#[test]
fn replay_stores_into_gatewatch_db_when_no_db_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("env.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["replay", "--no-progress", ATTACK_LOG])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GATEWATCH_DB", &url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = by_id(json_lines(&String::from_utf8(output.stdout).unwrap()));
    assert!(!printed.is_empty());
    assert_eq!(stored_incidents(&url), printed);
}

#[test]
fn read_only_commands_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let url = format!("sqlite://{}", path.display());
    for args in [
        vec!["incidents", "list", "--db", &url],
        vec!["incidents", "show", "abcd", "--db", &url],
        vec!["alerts", "list", "--db", &url],
    ] {
        let output = gatewatch(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("no database at {}", path.display())),
            "{args:?}: {stderr}"
        );
        assert!(!path.exists(), "{args:?} created {}", path.display());
    }
    let output = gatewatch(&["incidents", "list", "--db", "sqlite://"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("names no file"));
}

#[test]
fn a_bad_cidr_or_an_unknown_detector_is_an_error_listing_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    ok(&["replay", ATTACK_LOG, "--db", &url, "--output", "none"]);
    let output = gatewatch(&["incidents", "list", "--db", &url, "--entity", "10.0.0.0/33"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"10.0.0.0/33\" is not a CIDR"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = gatewatch(&["incidents", "list", "--db", &url, "--detector", "scanner"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no such detector") && stderr.contains("scanner-ip"),
        "{stderr}"
    );
    let stored = stored_incidents(&url);
    let short = &stored[0]["id"].as_str().unwrap()[..3];
    let output = gatewatch(&["incidents", "show", short, "--db", &url]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("at least 4 hex digits"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A route filter has slashes too, and is fine.
    ok(&[
        "incidents",
        "list",
        "--db",
        &url,
        "--entity",
        "GET /api/v1/x",
        "--detector",
        "scanner-ip",
    ]);
}

/// A hundred incidents with long entities and summaries fit an 80-column terminal, oldest
/// first; `--wide` prints them whole; CSV p-values are in scientific notation.
#[tokio::test]
async fn incident_tables_fit_the_terminal_and_wide_shows_everything() {
    use gatewatch::event::{EntityKind, Timestamp};
    let db = TestDb::sqlite();
    let store = gatewatch::store::Store::open(&db.url).await.unwrap();
    let incidents: Vec<_> = (0..100i64)
        .map(|n| {
            let entity = format!("2001:db8:{n:x}:ffff:ffff:ffff:ffff:{n:x}");
            let start = Timestamp(1_795_000_000_000_000_000 + (100 - n) * 60_000_000_000);
            let mut incident = common::incident(
                "new-source-sensitive-route",
                EntityKind::Ip,
                &entity,
                start,
                30,
            );
            incident.summary = format!(
                "{entity} reached /admin/deploy for the first time, {}",
                "and more ".repeat(8)
            );
            incident.score.p_value = Some(1.58e-49);
            incident
        })
        .collect();
    store.upsert_incidents(&incidents).await.unwrap();
    store.close().await;
    let narrow = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["incidents", "list", "--db", &db.url, "--limit", "100"])
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert!(narrow.status.success());
    let text = String::from_utf8(narrow.stdout).unwrap();
    assert_eq!(text.lines().count(), 101);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    // Oldest first: the incident that started last in the list's input order comes first.
    let first_row = text.lines().nth(1).unwrap();
    assert!(first_row.contains("2001:db8:63:ffff:"), "{first_row}");
    let wide = ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--limit",
        "100",
        "--wide",
    ]);
    assert!(wide.lines().any(|l| l.chars().count() > 80));
    assert!(
        wide.contains("2001:db8:63:ffff:ffff:ffff:ffff:63") && wide.contains("and more and more")
    );
    let csv = ok(&[
        "incidents",
        "list",
        "--db",
        &db.url,
        "--output",
        "csv",
        "--limit",
        "1",
    ]);
    assert!(csv.contains(",1.58e-49,"), "{csv}");
}

#[test]
fn an_unreachable_database_is_named_with_its_cause_said_once() {
    let out = gatewatch(&[
        "incidents",
        "list",
        "--db",
        "postgres://postgres@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot open database postgres://postgres@127.0.0.1:1/none"),
        "{stderr}"
    );
    let segments: Vec<&str> = stderr.trim().split(": ").collect();
    for (n, segment) in segments.iter().enumerate() {
        assert!(!segments[n + 1..].contains(segment), "said twice: {stderr}");
    }
}
