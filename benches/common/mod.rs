//! Shared bench fixtures: the real test log, synthetic ingress-nginx lines, container
//! wrappers and a deterministic PRNG. Built once per bench binary, outside timed loops.

// Each bench binary uses only part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;

/// The 25-minute realistic nginx `combined` log (59,721 lines).
pub const ATTACK_LOG: &str = "testdata/nginx-combined-attacks.log.gz";

/// The CRI / Docker receive time used for wrapped lines.
pub const WRAPPER_TIME: &str = "2026-11-20T09:00:00.123456789Z";

/// Lines of the gzipped test log (without newlines); at most `limit` of them.
pub fn combined_lines(limit: Option<usize>) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ATTACK_LOG);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut text)
        .unwrap_or_else(|e| panic!("decompress {}: {e}", path.display()));
    text.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Appends the ingress-nginx `upstreaminfo` tail to `combined` lines, deterministically:
/// ` <request_length> <request_time> [ns-svc-80] [] 10.42.1.7:8080 <len> <time> <status> <id>`.
/// The upstream length and status repeat the line's own `$body_bytes_sent` and `$status`.
pub fn ingress_lines(combined: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::new(0x1a2b_3c4d);
    combined
        .iter()
        .map(|line| {
            let (status, bytes) = status_and_bytes(line);
            let request_length = 180 + rng.below(900);
            let request_ms = 1 + rng.below(250);
            let upstream_ms = request_ms.saturating_sub(rng.below(3));
            let mut out = line.clone();
            out.extend_from_slice(
                format!(
                    " {request_length} {}.{:03} [ns-svc-80] [] 10.42.1.7:8080 {bytes} {}.{:03} {status} {:016x}{:016x}",
                    request_ms / 1000,
                    request_ms % 1000,
                    upstream_ms / 1000,
                    upstream_ms % 1000,
                    rng.next_u64(),
                    rng.next_u64(),
                )
                .as_bytes(),
            );
            out
        })
        .collect()
}

/// `$status` and `$body_bytes_sent` of a combined line (the text between the request's
/// closing quote and the referer's opening quote).
fn status_and_bytes(line: &[u8]) -> (String, String) {
    let fields = line.split(|&b| b == b'"').nth(2).expect("combined line");
    let fields = String::from_utf8_lossy(fields);
    let mut words = fields.split_whitespace();
    let status = words.next().expect("status").to_string();
    let bytes = words.next().expect("bytes").to_string();
    (status, bytes)
}

/// Traefik CLF: the combined line plus request count, router, backend URL and `<n>ms`.
pub fn traefik_lines(combined: &[Vec<u8>]) -> Vec<Vec<u8>> {
    combined
        .iter()
        .zip(0u64..)
        .map(|(line, n)| {
            let mut out = line.clone();
            out.extend_from_slice(
                format!(
                    " {} \"websecure-shop@kubernetescrd\" \"http://10.42.1.17:8080\" {}ms",
                    48_213 + n,
                    n % 250
                )
                .as_bytes(),
            );
            out
        })
        .collect()
}

/// The same requests in Envoy's default text format.
pub fn envoy_lines(combined: &[Vec<u8>]) -> Vec<Vec<u8>> {
    render_requests(combined, |req, n| {
        format!(
                "[{}] \"{} {} HTTP/1.1\" {} - 0 {} {} {} \"{}\" \"{}\" \"6c1a3f0e-8b2d-4f51-9e3a-{n:012x}\" \"shop.example.com\" \"10.42.2.8:8080\"",
                req.ts.unwrap().to_rfc3339_millis(),
                lossy(&req.method),
                lossy(&req.path),
                req.status.unwrap_or(200),
                req.bytes_sent.unwrap_or(0),
                12 + n % 50,
                11 + n % 50,
                req.client_ip.unwrap(),
                lossy(&req.user_agent),
            )
            .into_bytes()
    })
}

/// The same requests as Traefik JSON access-log records (the default field set).
pub fn traefik_json_lines(combined: &[Vec<u8>]) -> Vec<Vec<u8>> {
    json_lines(combined, |req, n| {
        serde_json::json!({
            "ClientAddr": format!("{}:52114", req.client_ip.unwrap()),
            "ClientHost": req.client_ip.unwrap().to_string(),
            "ClientPort": "52114",
            "ClientUsername": "-",
            "DownstreamContentSize": req.bytes_sent,
            "DownstreamStatus": req.status,
            "Duration": 4_213_877 + n,
            "OriginContentSize": req.bytes_sent,
            "OriginDuration": 3_987_120 + n,
            "OriginStatus": req.status,
            "Overhead": 226_757,
            "RequestAddr": "shop.example.com",
            "RequestContentSize": 0,
            "RequestCount": n,
            "RequestHost": "shop.example.com",
            "RequestMethod": lossy(&req.method),
            "RequestPath": format!("{}{}", lossy(&req.path), req.query.as_ref().map(|q| format!("?{}", String::from_utf8_lossy(q))).unwrap_or_default()),
            "RequestPort": "-",
            "RequestProtocol": "HTTP/2.0",
            "RequestScheme": "https",
            "RetryAttempts": 0,
            "RouterName": "websecure-shop@kubernetescrd",
            "ServiceAddr": "10.42.1.17:8080",
            "ServiceName": "shop-web-8080@kubernetescrd",
            "ServiceURL": "http://10.42.1.17:8080",
            "StartLocal": req.ts.unwrap().to_rfc3339(),
            "StartUTC": req.ts.unwrap().to_rfc3339(),
            "level": "info",
            "msg": "",
            "request_User-Agent": lossy(&req.user_agent),
            "time": req.ts.unwrap().to_rfc3339(),
        })
    })
}

/// The same requests as Istio JSON access-log records.
pub fn envoy_json_lines(combined: &[Vec<u8>]) -> Vec<Vec<u8>> {
    json_lines(combined, |req, n| {
        serde_json::json!({
            "authority": "shop.example.com",
            "bytes_received": 0,
            "bytes_sent": req.bytes_sent,
            "connection_termination_details": null,
            "downstream_local_address": "10.42.1.5:8080",
            "downstream_remote_address": format!("{}:53311", req.client_ip.unwrap()),
            "duration": 12 + n % 50,
            "method": lossy(&req.method),
            "path": lossy(&req.path),
            "protocol": "HTTP/1.1",
            "request_id": format!("6c1a3f0e-8b2d-4f51-9e3a-{n:012x}"),
            "requested_server_name": null,
            "response_code": req.status,
            "response_code_details": "via_upstream",
            "response_flags": "-",
            "route_name": "default",
            "start_time": req.ts.unwrap().to_rfc3339(),
            "upstream_cluster": "inbound|8080||",
            "upstream_host": "10.42.1.5:8080",
            "upstream_local_address": "127.0.0.6:39011",
            "upstream_service_time": "11",
            "upstream_transport_failure_reason": null,
            "user_agent": lossy(&req.user_agent),
            "x_forwarded_for": req.client_ip.unwrap().to_string(),
        })
    })
}

fn lossy(text: &Option<gatewatch::event::Text<'_>>) -> String {
    text.as_deref()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default()
}

fn json_lines(
    combined: &[Vec<u8>],
    record: impl Fn(&gatewatch::event::Request<'_>, u64) -> serde_json::Value,
) -> Vec<Vec<u8>> {
    render_requests(combined, |req, n| {
        serde_json::to_vec(&record(req, n)).expect("serialisable")
    })
}

/// Re-renders each combined line (parsed, numbered) in another format.
fn render_requests(
    combined: &[Vec<u8>],
    render: impl Fn(&gatewatch::event::Request<'_>, u64) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    let parser = gatewatch::parse::preset("combined").expect("preset");
    combined
        .iter()
        .zip(0u64..)
        .map(|(line, n)| render(&parser.parse(line).expect("bench lines parse"), n))
        .collect()
}

/// `<time> stdout F <line>`: a full CRI line.
pub fn cri_wrap(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|line| {
            let mut out = Vec::with_capacity(line.len() + 40);
            out.extend_from_slice(WRAPPER_TIME.as_bytes());
            out.extend_from_slice(b" stdout F ");
            out.extend_from_slice(line);
            out
        })
        .collect()
}

/// `{"log":"<line>\n","stream":"stdout","time":…}`: a Docker json-file line.
pub fn docker_wrap(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|line| {
            let mut log = String::from_utf8_lossy(line).into_owned();
            log.push('\n');
            let log = serde_json::to_string(&log).expect("string serializes");
            format!(r#"{{"log":{log},"stream":"stdout","time":"{WRAPPER_TIME}"}}"#).into_bytes()
        })
        .collect()
}

pub fn total_bytes(lines: &[Vec<u8>]) -> u64 {
    lines.iter().map(|line| line.len() as u64).sum()
}

/// SplitMix64: tiny, deterministic, good enough for bench inputs.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
