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
