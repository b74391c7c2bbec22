//! End-to-end tests of the `gatewatch` binary on the project's own test data.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";
const ATTACK_LABELS: &str = "testdata/nginx-combined-attacks.labels.jsonl";

fn gatewatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("COLUMNS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut pipe = child.stdin.take().unwrap();
    // A run that rejects its arguments exits without reading stdin.
    match pipe.write_all(stdin.unwrap_or_default()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        result => result.unwrap(),
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn labels() -> Vec<Value> {
    json_lines(&std::fs::read(format!("{}/{ATTACK_LABELS}", env!("CARGO_MANIFEST_DIR"))).unwrap())
}

fn ts(value: &Value) -> gatewatch::event::Timestamp {
    gatewatch::event::Timestamp::parse_rfc3339(value.as_str().unwrap()).unwrap()
}

#[test]
fn replay_finds_each_labelled_attack_and_nothing_benign() {
    let out = gatewatch(&["replay", ATTACK_LOG], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let incidents = json_lines(&out.stdout);
    for label in labels() {
        let entity = label["entity"].as_str().unwrap();
        let kind = label["kind"].as_str().unwrap();
        let hits: Vec<&Value> = incidents.iter().filter(|i| i["entity"] == entity).collect();
        if kind.starts_with("benign_") {
            assert!(hits.is_empty(), "benign {kind} {entity} flagged: {hits:?}");
            continue;
        }
        let hit = hits
            .iter()
            .find(|i| i["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} from {entity} not found in {incidents:?}"));
        let slack = 60 * 1_000_000_000;
        let (start, end) = (
            ts(&label["start"]).nanos() - slack,
            ts(&label["end"]).nanos() + slack,
        );
        for field in ["started_at", "detected_at"] {
            let at = ts(&hit[field]).nanos();
            assert!(
                start <= at && at <= end,
                "{field} outside the attack: {hit}"
            );
        }
    }
    for incident in &incidents {
        assert!(
            ts(&incident["started_at"]) <= ts(&incident["detected_at"]),
            "{incident}"
        );
        assert!(
            ts(&incident["detected_at"]) <= ts(&incident["last_seen"]),
            "{incident}"
        );
        assert_eq!(incident["entity_kind"], "ip");
        assert_eq!(incident["status"], "closed");
        assert!(incident["id"].as_str().unwrap().len() == 16);
        assert!(!incident["evidence"].as_array().unwrap().is_empty());
    }
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("59721 lines"), "{summary}");
    assert!(summary.contains("unparsed 0"), "{summary}");
}

#[test]
fn stdin_replay_matches_file_replay() {
    let bytes = std::fs::read(format!("{}/{ATTACK_LOG}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let from_stdin = gatewatch(&["replay", "-"], Some(&bytes));
    let from_file = gatewatch(&["replay", ATTACK_LOG], None);
    assert!(from_stdin.status.success());
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_stdin.stdout, from_file.stdout);
}

#[test]
fn bad_lines_are_counted_sampled_and_escaped_never_fatal() {
    let mut log = Vec::new();
    log.extend_from_slice(b"garbage \x1b[31mred\x1b[0m line\n");
    for second in 0..10 {
        log.extend_from_slice(
            format!("192.0.2.1 - - [20/Nov/2026:09:00:{second:02} +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n").as_bytes(),
        );
    }
    log.extend_from_slice(b"192.0.2.1 - - [20/Nov/2026:09:00:11 +0000] \"GET / HTTP/1.1\" 2\n");
    let out = gatewatch(&["replay", "--format", "combined", "-"], Some(&log));
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("parsed 10, unparsed 2"), "{stderr}");
    assert!(stderr.contains("-:1: "), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "terminal escape leaked: {stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}[31mred"), "{stderr}");
}

#[test]
fn table_output_has_a_row_per_incident() {
    let out = gatewatch(&["replay", "--output", "table", ATTACK_LOG], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("TIME (UTC)"));
    let rows: Vec<&str> = lines.collect();
    let jsonl = json_lines(&gatewatch(&["replay", ATTACK_LOG], None).stdout);
    assert_eq!(rows.len(), jsonl.len());
    assert!(rows
        .iter()
        .any(|r| r.contains("scanner-ip") && r.contains("100.86.210.66")));
    // In time order (jsonl prints at each close), whole when not fitted to a terminal.
    let mut times: Vec<&str> = (jsonl.iter())
        .map(|i| i["detected_at"].as_str().unwrap())
        .collect();
    times.sort();
    let shown: Vec<String> = rows.iter().map(|r| r[..11].to_owned()).collect();
    let expected: Vec<String> = (times.iter())
        .map(|t| format!("{} {}", &t[5..10], &t[11..16]))
        .collect();
    assert_eq!(shown, expected);
    assert!(
        rows.iter().all(|r| !r.contains('…')),
        "nothing cut: {rows:?}"
    );
}

#[test]
fn unknown_format_names_the_known_ones() {
    let out = gatewatch(&["replay", "--format", "apache", ATTACK_LOG], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in gatewatch::parse::PRESET_NAMES {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
}

#[test]
fn parse_prints_one_object_per_record_in_order() {
    let sample = std::fs::read(format!(
        "{}/testdata/combined-sample.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut input = sample.clone();
    input.extend_from_slice(b"not a log line\n");
    let out = gatewatch(&["parse", "--format", "combined"], Some(&input));
    assert!(out.status.success());
    let records = json_lines(&out.stdout);
    let lines = sample
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(records.len(), lines + 1);
    assert!(
        records[..lines].iter().all(|r| r.get("error").is_none()),
        "{records:?}"
    );
    assert_eq!(records[lines]["line"], lines as u64 + 1);
    let tls = records
        .iter()
        .find(|r| {
            r["request_line"]
                .as_str()
                .is_some_and(|l| l.starts_with("\\x16"))
        })
        .expect("the TLS handshake line");
    assert!(
        tls.get("method").is_none() && tls.get("path").is_none(),
        "{tls}"
    );
    assert_eq!(tls["status"], 400);
    for record in &records[..lines] {
        assert!(record["ts"].as_str().unwrap().ends_with('Z'));
        assert!(record.get("user") != Some(&Value::String("-".into())));
    }
}

#[test]
fn parse_auto_detects_ingress_nginx() {
    let sample = std::fs::read(format!(
        "{}/testdata/ingress-nginx-sample.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let out = gatewatch(&["parse"], Some(&sample));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("format ingress-nginx"));
    let records = json_lines(&out.stdout);
    // One sample line was answered by nginx itself (`[] []`): no route, as logged.
    let routed = records.iter().filter(|r| r.get("route").is_some()).count();
    assert_eq!(routed, records.len() - 1, "{records:?}");
    assert!(records
        .iter()
        .any(|r| r["upstream"] == "10.42.3.30:80, 10.42.3.31:80"));
}

#[test]
fn detectors_check_reports_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "id = \"x\"\nkind = \"rate_spike\"\nentity = \"ip\"\nseverity = \"high\"\n[params]\nwindow = \"7s\"\np_value = 2.0\n",
    )
    .unwrap();
    let out = gatewatch(&["detectors", "check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml: params.window:"), "{stderr}");
    assert!(stderr.contains("bad.toml: params.p_value:"), "{stderr}");
    let out = gatewatch(&["detectors", "check", "detectors"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = gatewatch(&["detectors", "list"], None);
    let text = String::from_utf8(list.stdout).unwrap();
    for id in ["rate-spike-ip", "scanner-ip", "brute-force-ip"] {
        assert!(text.contains(id), "{text}");
    }
}

#[test]
fn a_custom_log_format_parses_and_a_broken_one_is_explained() {
    let line = b"10.0.0.1 [10/Mar/2025:14:02:11 +0000] \"POST /login?next=/ HTTP/1.1\" 401 key-1\n";
    let format = r#"$remote_addr [$time_local] "$request" $status $http_x_api_key"#;
    let out = gatewatch(&["parse", "--log-format", format], Some(line));
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 401);
    assert_eq!(records[0]["path"], "/login");
    let out = gatewatch(
        &["parse", "--log-format", "$remote_addr$status"],
        Some(line),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no literal text between them"));
}

#[test]
fn cri_wrapped_replay_matches_plain_replay() {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(format!("{}/{ATTACK_LOG}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .read_to_end(&mut plain)
    .unwrap();
    let mut wrapped = Vec::new();
    for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        wrapped.extend_from_slice(b"2026-11-20T09:00:00.000000001Z stdout F ");
        wrapped.extend_from_slice(line);
        wrapped.push(b'\n');
    }
    let from_cri = gatewatch(&["replay", "-"], Some(&wrapped));
    let from_plain = gatewatch(&["replay", "-"], Some(&plain));
    assert!(from_cri.status.success());
    assert!(String::from_utf8_lossy(&from_cri.stderr).contains("unparsed 0"));
    assert!(!from_plain.stdout.is_empty());
    // Same incidents, in the same order, from two processes with different hash seeds.
    assert_eq!(from_cri.stdout, from_plain.stdout);
}

#[test]
fn trusted_proxies_pick_the_real_client() {
    let line = b"10.0.0.2 - - [10/Mar/2025:14:02:11 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\" \"198.51.100.1, 203.0.113.9, 10.0.0.4\"\n";
    let format = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;
    let client = |extra: &[&str]| {
        let mut args = vec!["parse", "--log-format", format];
        args.extend_from_slice(extra);
        json_lines(&gatewatch(&args, Some(line)).stdout)[0]["client_ip"].clone()
    };
    assert_eq!(
        client(&[]),
        "10.0.0.2",
        "without trusted proxies the peer stays"
    );
    assert_eq!(client(&["--trusted-proxies", "10.0.0.0/8"]), "203.0.113.9");
    let out = gatewatch(&["parse", "--trusted-proxies", "10.0.0.0/33"], Some(line));
    assert_eq!(out.status.code(), Some(2), "clap rejects a bad CIDR");
}

#[test]
fn json_fields_map_a_custom_json_log() {
    let line = br#"{"time":"2025-03-10T14:06:00+00:00","remote_addr":"203.0.113.45","status":"404","uri":"/x?y=1","ua":"curl\u0020x"}"#;
    let map = "ts=time,client_ip=remote_addr,status=status,path=uri,user_agent=ua";
    let out = gatewatch(&["parse", "--json-fields", map], Some(line));
    let record = &json_lines(&out.stdout)[0];
    assert_eq!(record["status"], 404);
    assert_eq!(record["query"], "y=1");
    assert_eq!(record["user_agent"], "curl x");
    let out = gatewatch(&["parse", "--json-fields", "client_ip=ip"], Some(line));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ts=<key> is required"));
}

#[test]
fn an_ignore_file_keeps_its_clients_from_every_detector_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let all = json_lines(&gatewatch(&["replay", ATTACK_LOG], None).stdout);
    let attacker = "198.18.64.134";
    assert!(all.iter().any(|i| i["entity"] == attacker), "{all:?}");
    let ignore = dir.path().join("ignore.toml");
    std::fs::write(
        &ignore,
        format!("cidrs = [\"{attacker}/32\"]\nuser_agents = [\"UptimeRobot\"]\npaths = [\"/healthz\"]\n"),
    )
    .unwrap();
    let out = gatewatch(
        &[
            "replay",
            "--ignore-file",
            ignore.to_str().unwrap(),
            ATTACK_LOG,
        ],
        None,
    );
    assert!(out.status.success());
    let kept = json_lines(&out.stdout);
    let expected: Vec<&Value> = all.iter().filter(|i| i["entity"] != attacker).collect();
    assert_eq!(kept.iter().collect::<Vec<_>>(), expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ignored: u64 = stderr
        .split("ignored ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ignored count in {stderr}"));
    assert!(
        ignored >= 108,
        "the attacker sent at least its spike: {ignored}"
    );

    std::fs::write(
        &ignore,
        "cidrs = [\"10.0.0.0/33\"]\npaths = [\"healthz\"]\n",
    )
    .unwrap();
    let out = gatewatch(
        &[
            "replay",
            "--ignore-file",
            ignore.to_str().unwrap(),
            ATTACK_LOG,
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ignore.toml: cidrs:") && stderr.contains("ignore.toml: paths:"),
        "{stderr}"
    );
}

#[test]
fn a_forced_format_that_reads_under_half_of_the_first_lines_fails_naming_the_right_one() {
    let out = gatewatch(&["replay", "--format", "traefik", ATTACK_LOG], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--format traefik parses 0 of the first 64 lines")
            && stderr.contains("auto-detection would pick combined (64/64 lines)"),
        "{stderr}"
    );
    let out = gatewatch(
        &["replay", "--log-format", "$remote_addr $status", ATTACK_LOG],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--log-format parses 0 of the first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container's stream carries nginx's error log beside its access log: a forced format
/// that no other preset beats reads the access lines, counts the rest as unparsed, and the
/// detectors see every access line (six refused Basic-auth logins in a second).
#[test]
fn a_forced_format_reads_an_access_log_mixed_with_more_error_lines() {
    let mut log = String::new();
    for n in 0..16 {
        log += &format!(
            "2026/03/06 16:14:13 [error] 19#19: *{n} user \"foo\" was not found in \"/etc/htpasswd\", \
             client: 198.51.100.7, server: _, request: \"POST /client HTTP/1.1\", host: \"example.com\"\n"
        );
    }
    for _ in 0..6 {
        log += "198.51.100.7 - foo [06/Mar/2026:16:14:13 +0000] \"POST /client HTTP/1.1\" 401 141 \"-\" \"curl/8.5\"\n";
    }
    let out = gatewatch(
        &[
            "replay",
            "--no-progress",
            "--output",
            "jsonl",
            "--format",
            "combined",
            "-",
        ],
        Some(log.as_bytes()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("parsed 6, unparsed 16"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"kind\":\"brute_force\"")
            && stdout.contains("\"entity\":\"198.51.100.7\""),
        "{stdout}"
    );
}

/// nginx's `main` format behind a proxy: every peer is the proxy, the clients are in the
/// forwarded chain. Auto-detection must see the chain; replay must say when the proxy is
/// not declared, or when the declared proxies match no peer.
#[test]
fn a_proxy_nobody_declared_is_named_and_a_declared_one_gives_the_real_clients() {
    let mut log = String::new();
    for n in 0..40 {
        let (client, path, status) = if n % 2 == 0 {
            ("203.0.113.9", "/login", 401)
        } else {
            ("198.51.100.20", "/", 200)
        };
        log.push_str(&format!(
            "10.0.0.5 - - [20/Nov/2026:09:00:{:02} +0000] \"POST {path} HTTP/1.1\" {status} 12 \"-\" \"curl/8.5\" \"{client}, 10.0.0.5\"\n",
            n
        ));
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["replay", "--no-progress", "-"];
        args.extend_from_slice(extra);
        let out = gatewatch(&args, Some(log.as_bytes()));
        assert!(out.status.success());
        (
            json_lines(&out.stdout),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (incidents, stderr) = run(&[]);
    assert!(stderr.contains("format nginx-main"), "{stderr}");
    assert!(
        stderr.contains("warning: 10.0.0.5, a private address, sent at least 100% of the requests"),
        "{stderr}"
    );
    assert!(
        incidents.iter().all(|i| i["entity"] != "203.0.113.9"),
        "the proxy hides the client"
    );

    let (incidents, stderr) = run(&["--trusted-proxies", "10.0.0.0/8"]);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        incidents
            .iter()
            .any(|i| i["kind"] == "brute_force" && i["entity"] == "203.0.113.9"),
        "{incidents:?}"
    );

    let (_, stderr) = run(&["--trusted-proxies", "192.168.0.0/16"]);
    assert!(
        stderr.contains("warning: --trusted-proxies matched the peer of none of the 40 requests"),
        "{stderr}"
    );
}
