//! One chunk of a source, decoded on a worker thread. The batch owns the chunk's bytes and
//! the requests parsed from them, which borrow those bytes (a self-referential cell): the
//! engine thread reads each `Request` as it is, with no copy and no rebuilding.

use std::borrow::Cow;
use std::sync::Arc;

use bumpalo::Bump;
use self_cell::self_cell;

use crate::detect::PathMatch;
use crate::event::Request;
use crate::input::{capped_lines, Chunk};
use crate::parse::{Decoder, Parser, TrustedProxies};

/// Unparsed lines sampled per batch (the summary keeps the first few overall).
pub const SAMPLES_PER_BATCH: usize = 5;
/// Longest unparsed line shown in a sample.
const SAMPLE_BYTES: usize = 160;

/// What the batch owns: the chunk, an arena for records joined from container fragments,
/// and the source's name the requests point to.
pub struct Owner {
    data: Vec<u8>,
    len: usize,
    arena: Bump,
    source: Arc<str>,
}

/// A parsed line: the request, the record it came from (kept as evidence), and its
/// detectors' path-pattern bits, matched here rather than on the engine thread.
pub struct Record<'a> {
    pub request: Request<'a>,
    pub line: &'a [u8],
    pub path_bits: Option<u32>,
    /// Stream offset where the record's (last) line starts: unique and increasing within
    /// a source, so a consumer can tell a record it has seen from one it has not.
    pub offset: u64,
    /// Which detector families see it (`detect::family`): all, but in a cluster
    /// partition only those whose key lands there.
    pub families: u8,
}

impl Record<'_> {
    /// The request's time (the decoder never yields a record without one).
    pub fn ts(&self) -> crate::event::Timestamp {
        self.request.ts.unwrap_or_default()
    }
}

type Records<'a> = Vec<Record<'a>>;

self_cell!(
    struct Parsed {
        owner: Owner,
        #[covariant]
        dependent: Records,
    }
);

/// Decoded lines of one chunk, in line order, with what went wrong on the others.
pub struct Batch {
    parsed: Parsed,
    pub counts: Counts,
}

/// What decoding a chunk found besides the requests.
#[derive(Debug, Default)]
pub struct Counts {
    /// Stream offset up to which every line of this batch is accounted for (a container
    /// record still waiting for fragments holds it at its first fragment).
    pub end_offset: u64,
    pub lines: u64,
    pub bytes: u64,
    pub unparsed: u64,
    /// (line index within the batch, rendered sample) of the first unparsed lines.
    pub samples: Vec<(u64, String)>,
    /// Lines cut at `max_line_bytes` by the reader, and joined records cut by the decoder.
    pub cut_lines: u64,
    /// Container records whose last fragment never came (end of input).
    pub incomplete: u64,
    /// Requests whose peer was a trusted proxy.
    pub proxied: u64,
    /// The batch's busiest private client addresses (after proxy resolution), counted
    /// Misra–Gries style: a proxy in front that nobody declared shows as one of them.
    pub private_clients: PrivateClients,
}

/// Heavy hitters among private client addresses, in `SLOTS` counters: an address sending
/// more than 1/(SLOTS+1) of the requests is kept, its count short by at most that much.
#[derive(Clone, Debug, Default)]
pub struct PrivateClients {
    pub counts: Vec<(std::net::IpAddr, u64)>,
}

impl PrivateClients {
    const SLOTS: usize = 4;

    pub fn add(&mut self, ip: std::net::IpAddr, n: u64) {
        if let Some(slot) = self.counts.iter_mut().find(|(known, _)| *known == ip) {
            slot.1 += n;
        } else if self.counts.len() < Self::SLOTS {
            self.counts.push((ip, n));
        } else {
            let least = self
                .counts
                .iter()
                .map(|(_, c)| *c)
                .min()
                .unwrap_or(0)
                .min(n);
            for slot in &mut self.counts {
                slot.1 -= least;
            }
            self.counts.retain(|(_, c)| *c > 0);
            if n > least && self.counts.len() < Self::SLOTS {
                self.counts.push((ip, n - least));
            }
        }
    }

    pub fn merge(&mut self, other: &PrivateClients) {
        for &(ip, n) in &other.counts {
            self.add(ip, n);
        }
    }

    /// The busiest private address and a lower bound of its requests.
    pub fn top(&self) -> Option<(std::net::IpAddr, u64)> {
        self.counts.iter().copied().max_by_key(|(_, c)| *c)
    }
}

/// Private, loopback, link-local or unique-local: an address of our own network.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    match crate::event::canonical_ip(ip) {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// How a source's lines are decoded; shared by every chunk of the source.
pub struct DecodeSpec {
    pub parser: Arc<dyn Parser>,
    pub trusted: TrustedProxies,
    pub max_line_bytes: usize,
    /// The source's name, as `Request::source`.
    pub source: Arc<str>,
    /// The engine's path pattern sets (`Engine::path_match`), matched per request here.
    pub path_match: Option<Arc<PathMatch>>,
}

/// A consumed batch's reusable allocations (a fresh ~1 MB per chunk would cost a page fault
/// every 4 KiB of it).
#[derive(Default)]
pub struct Spare {
    pub data: Vec<u8>,
    arena: Bump,
    /// An empty vector of records, kept for its allocation.
    records: Vec<Record<'static>>,
}

/// An empty vector of another lifetime with the same allocation: the standard library
/// collects an iterator over a vector in place when the element layouts match, so nothing
/// is allocated (and, for an empty vector, nothing is copied).
fn recycle<'b>(mut records: Vec<Record<'_>>) -> Vec<Record<'b>> {
    records.clear();
    records
        .into_iter()
        .map(|_| unreachable!("cleared"))
        .collect()
}

impl Batch {
    /// A batch of records decoded by `records` from `data` (which they borrow), for
    /// sources that are not text (a cluster analyzer's messages).
    pub fn from_bytes(
        data: Vec<u8>,
        source: Arc<str>,
        counts: Counts,
        records: impl for<'a> FnOnce(&'a [u8], &'a str) -> Vec<Record<'a>>,
    ) -> Batch {
        let owner = Owner {
            len: data.len(),
            data,
            arena: Bump::new(),
            source,
        };
        let parsed = Parsed::new(owner, |owner| {
            records(&owner.data[..owner.len], &owner.source)
        });
        Batch { parsed, counts }
    }

    /// The parsed lines, in order.
    pub fn records(&self) -> &[Record<'_>] {
        self.parsed.borrow_dependent()
    }

    /// The batch's buffers, for reuse once it is consumed (its requests are dropped here).
    pub fn into_spare(mut self) -> Spare {
        let records = self
            .parsed
            .with_dependent_mut(|_, records| recycle(std::mem::take(records)));
        let owner = self.parsed.into_owner();
        let mut arena = owner.arena;
        arena.reset();
        Spare {
            data: owner.data,
            arena,
            records,
        }
    }
}

/// Decodes every line of `chunk`. Chunks end on record boundaries (the reader never splits
/// a container record it can see the end of), so each gets a fresh decoder.
pub fn decode(chunk: Chunk, spec: &DecodeSpec, spare: Spare) -> Batch {
    let owner = Owner {
        data: chunk.data,
        len: chunk.len,
        arena: spare.arena,
        source: spec.source.clone(),
    };
    let mut counts = Counts {
        end_offset: chunk.end_offset,
        bytes: chunk.len as u64,
        cut_lines: chunk.cut_lines,
        ..Counts::default()
    };
    let start_offset = chunk.start_offset;
    let reused = spare.records;
    let parsed = Parsed::new(owner, |owner| {
        decode_lines(owner, spec, start_offset, &mut counts, recycle(reused))
    });
    Batch { parsed, counts }
}

fn decode_lines<'a>(
    owner: &'a Owner,
    spec: &DecodeSpec,
    start_offset: u64,
    counts: &mut Counts,
    mut records: Records<'a>,
) -> Records<'a> {
    let mut decoder = Decoder::shared(spec.parser.clone())
        .with_trusted_proxies(spec.trusted.clone())
        .with_max_record_bytes(spec.max_line_bytes);
    let text = &owner.data[..owner.len];
    let base = text.as_ptr() as usize;
    records.reserve(owner.len / 160 + 1);
    // Stream offset of the first fragment of a record still waiting for its last one.
    let mut pending_since: Option<u64> = None;
    let sample = |counts: &mut Counts, index: u64, why: String| {
        counts.unparsed += 1;
        if counts.samples.len() < SAMPLES_PER_BATCH {
            counts.samples.push((index, why));
        }
    };
    for (index, (line, cut)) in capped_lines(text, spec.max_line_bytes).enumerate() {
        counts.lines += 1;
        counts.cut_lines += u64::from(cut);
        let line_offset = start_offset + (line.as_ptr() as usize - base) as u64;
        let Some(record) = decoder.record(line) else {
            pending_since.get_or_insert(line_offset);
            continue;
        };
        if !decoder.has_pending() {
            pending_since = None;
        }
        let (record, wrapper_ts) = match record {
            Ok(found) => found,
            Err(err) => {
                sample(counts, index as u64, format!("{err}: {}", shown(line)));
                continue;
            }
        };
        // A record joined from fragments is copied once into the arena, so the request
        // can borrow it like any other line.
        let record: &'a [u8] = match record {
            Cow::Borrowed(line) => line,
            Cow::Owned(joined) => owner.arena.alloc_slice_copy(&joined),
        };
        // Parsed in place, in the vector: no copies of the ~500-byte request.
        records.push(Record {
            request: Request::default(),
            line: record,
            path_bits: None,
            offset: line_offset,
            families: crate::detect::family::ALL,
        });
        let slot = records.last_mut().expect("just pushed");
        match decoder.parse_into(record, wrapper_ts, &mut slot.request) {
            Ok(()) => {
                slot.request.source = Some(&owner.source);
                if let Some(ip) = slot.request.client_ip.filter(|ip| is_private(*ip)) {
                    counts.private_clients.add(ip, 1);
                }
                slot.path_bits = spec.path_match.as_ref().map(|m| m.bits(&slot.request));
            }
            Err(err) => {
                records.pop();
                // Raw text: whoever shows it escapes it for its medium.
                sample(counts, index as u64, format!("{err}: {}", shown(record)));
            }
        }
    }
    if let Some(offset) = pending_since {
        // End of what the reader had: the record's fragments are counted, not analysed.
        counts.incomplete += 1;
        counts.end_offset = offset;
        let last = counts.lines.saturating_sub(1);
        sample(
            counts,
            last,
            "container record without its final fragment at end of input".into(),
        );
    }
    counts.cut_lines += decoder.truncated();
    counts.proxied += decoder.proxied();
    records
}

fn shown(record: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(&record[..record.len().min(SAMPLE_BYTES)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::preset;

    fn spec(format: &str) -> DecodeSpec {
        DecodeSpec {
            parser: Arc::from(preset(format).unwrap()),
            trusted: TrustedProxies::default(),
            max_line_bytes: 1 << 16,
            source: "f.log".into(),
            path_match: None,
        }
    }

    fn chunk(data: &[u8]) -> Chunk {
        Chunk {
            data: data.to_vec(),
            len: data.len(),
            start_offset: 1000,
            end_offset: 1000 + data.len() as u64,
            cut_lines: 0,
            last: true,
        }
    }

    #[test]
    fn records_point_into_the_chunk_and_round_trip_as_requests() {
        let text = b"203.0.113.9 - alice [10/Mar/2025:14:02:11 +0000] \"GET /a?b=1 HTTP/1.1\" 404 12 \"-\" \"curl/8\"\nnot a log line\n";
        let batch = decode(chunk(text), &spec("combined"), Spare::default());
        assert_eq!(
            (
                batch.counts.lines,
                batch.counts.unparsed,
                batch.records().len()
            ),
            (2, 1, 1)
        );
        assert!(batch.counts.samples[0].1.contains("not a log line"));
        let record = &batch.records()[0];
        let req = &record.request;
        let direct = preset("combined")
            .unwrap()
            .parse(&text[..text.len() - 16])
            .unwrap();
        assert_eq!(req.path, direct.path);
        assert_eq!(req.user.as_deref(), Some(&b"alice"[..]));
        assert_eq!(req.status, Some(404));
        assert_eq!(req.source, Some("f.log"));
        let owned = batch.parsed.borrow_owner().data.as_ptr_range();
        assert!(
            owned.contains(&record.line.as_ptr()),
            "plain text is borrowed from the chunk, not copied"
        );
        assert!(record.line.starts_with(b"203.0.113.9"));
    }

    #[test]
    fn joined_container_records_live_in_the_arena() {
        let text = b"2025-03-10T14:10:00.1Z stdout P 203.0.113.45 - - [10/Mar/2025:14:10:00 +0000] \"GET /a\n2025-03-10T14:10:00.1Z stdout F bc HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\"\n";
        let batch = decode(chunk(text), &spec("combined"), Spare::default());
        assert_eq!(batch.records().len(), 1);
        let req = &batch.records()[0].request;
        assert_eq!(req.path.as_deref(), Some(&b"/abc"[..]));
        assert_eq!(batch.counts.end_offset, 1000 + text.len() as u64);
    }

    #[test]
    fn a_partial_record_at_the_end_is_counted_and_holds_the_offset() {
        let full = b"2025-03-10T14:10:00.1Z stdout F 203.0.113.45 - - [10/Mar/2025:14:10:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"\n";
        let partial = b"2025-03-10T14:10:01.1Z stdout P 203.0.113.45 - - [10/Mar/2025:14:10:01 +0000] \"GET /a\n";
        let text = [&full[..], &partial[..]].concat();
        let batch = decode(chunk(&text), &spec("combined"), Spare::default());
        assert_eq!(batch.records().len(), 1);
        assert_eq!((batch.counts.incomplete, batch.counts.unparsed), (1, 1));
        assert_eq!(batch.counts.end_offset, 1000 + full.len() as u64);
    }
}
