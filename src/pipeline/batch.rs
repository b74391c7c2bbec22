//! One chunk of a source, decoded on a worker thread into compact records that point into
//! the chunk's own bytes, so the engine thread gets the lines without copying them.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::{Request, Text, Timestamp};
use crate::input::{capped_lines, Chunk};
use crate::parse::{Decoder, Parser, TrustedProxies};
use std::net::IpAddr;

/// Unparsed lines sampled per batch (the summary keeps the first few overall).
pub const SAMPLES_PER_BATCH: usize = 5;
/// Longest unparsed line shown in a sample.
const SAMPLE_BYTES: usize = 160;

/// Where a field's bytes are: in the chunk, in the batch's arena (un-escaped or joined
/// text), or nowhere (absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

const ABSENT: u32 = u32::MAX;
const IN_ARENA: u32 = 1 << 31;

impl Span {
    const NONE: Span = Span {
        start: 0,
        len: ABSENT,
    };
}

/// A parsed line in the fields detectors read, plus the record itself for evidence.
#[derive(Clone, Debug)]
pub struct Record {
    pub ts: Timestamp,
    pub client_ip: Option<IpAddr>,
    pub status: Option<u16>,
    pub bytes_sent: Option<u64>,
    pub duration_ns: Option<u64>,
    line: Span,
    method: Span,
    path: Span,
    query: Span,
    request_line: Span,
    http_version: Span,
    user: Span,
    user_agent: Span,
    referer: Span,
    host: Span,
    route: Span,
    upstream: Span,
    x_forwarded_for: Span,
    request_id: Span,
}

/// Decoded lines of one chunk, in line order, with what went wrong on the others.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    arena: Vec<u8>,
    pub records: Vec<Record>,
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
}

/// How a source's lines are decoded; shared by every chunk of the source.
pub struct DecodeSpec {
    pub parser: Arc<dyn Parser>,
    pub trusted: TrustedProxies,
    pub max_line_bytes: usize,
}

/// A consumed batch's allocations, reused for the next one (a fresh ~1 MB of vectors per
/// chunk would cost a page fault every 4 KiB of them).
#[derive(Debug, Default)]
pub struct Spare {
    pub data: Vec<u8>,
    arena: Vec<u8>,
    records: Vec<Record>,
}

impl Batch {
    /// The batch's buffers, for reuse once it is consumed.
    pub fn into_spare(self) -> Spare {
        Spare {
            data: self.data,
            arena: self.arena,
            records: self.records,
        }
    }

    fn bytes_of(&self, span: Span) -> Option<&[u8]> {
        if span.len == ABSENT {
            return None;
        }
        let (buf, start) = if span.start & IN_ARENA != 0 {
            (&self.arena, span.start & !IN_ARENA)
        } else {
            (&self.data, span.start)
        };
        let start = start as usize;
        Some(&buf[start..start + span.len as usize])
    }

    fn text(&self, span: Span) -> Option<Text<'_>> {
        self.bytes_of(span).map(Cow::Borrowed)
    }

    /// The record as logged (after any container unwrapping), kept as evidence.
    pub fn line(&self, record: &Record) -> &[u8] {
        self.bytes_of(record.line).unwrap_or_default()
    }

    /// The record as the `Request` detectors read, borrowing from the batch.
    pub fn request<'a>(&'a self, record: &Record, source: &'a str) -> Request<'a> {
        Request {
            ts: Some(record.ts),
            client_ip: record.client_ip,
            method: self.text(record.method),
            path: self.text(record.path),
            query: self.text(record.query),
            request_line: self.text(record.request_line),
            http_version: self.text(record.http_version),
            status: record.status,
            bytes_sent: record.bytes_sent,
            duration_ns: record.duration_ns,
            user: self.text(record.user),
            user_agent: self.text(record.user_agent),
            referer: self.text(record.referer),
            host: self.text(record.host),
            route: self.text(record.route),
            upstream: self.text(record.upstream),
            x_forwarded_for: self.text(record.x_forwarded_for),
            request_id: self.text(record.request_id),
            source: Some(source),
            extra: Vec::new(),
        }
    }
}

/// Places field bytes: a slice inside the chunk becomes a span of it; anything else (JSON
/// un-escaping, joined container fragments) is copied into the arena.
struct Placer<'d> {
    data: &'d [u8],
    arena: &'d mut Vec<u8>,
}

impl Placer<'_> {
    fn place(&mut self, bytes: &[u8]) -> Span {
        let base = self.data.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        if at >= base && at + bytes.len() <= base + self.data.len() {
            return Span {
                start: (at - base) as u32,
                len: bytes.len() as u32,
            };
        }
        let start = self.arena.len() as u32 | IN_ARENA;
        self.arena.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn field(&mut self, text: &Option<Text<'_>>) -> Span {
        match text {
            Some(text) => self.place(text),
            None => Span::NONE,
        }
    }

    fn record(&mut self, req: &Request<'_>, ts: Timestamp, line: &[u8]) -> Record {
        Record {
            ts,
            client_ip: req.client_ip,
            status: req.status,
            bytes_sent: req.bytes_sent,
            duration_ns: req.duration_ns,
            line: self.place(line),
            method: self.field(&req.method),
            path: self.field(&req.path),
            query: self.field(&req.query),
            request_line: self.field(&req.request_line),
            http_version: self.field(&req.http_version),
            user: self.field(&req.user),
            user_agent: self.field(&req.user_agent),
            referer: self.field(&req.referer),
            host: self.field(&req.host),
            route: self.field(&req.route),
            upstream: self.field(&req.upstream),
            x_forwarded_for: self.field(&req.x_forwarded_for),
            request_id: self.field(&req.request_id),
        }
    }
}

/// Decodes every line of `chunk`. Chunks end on record boundaries (the reader never splits
/// a container record it can see the end of), so each gets a fresh decoder.
pub fn decode(chunk: Chunk, spec: &DecodeSpec, spare: Spare) -> Batch {
    // Offsets of the data's lines are derived from the chunk's start offset.
    let mut decoder = Decoder::shared(spec.parser.clone())
        .with_trusted_proxies(spec.trusted.clone())
        .with_max_record_bytes(spec.max_line_bytes);
    let len = chunk.len;
    let data = chunk.data;
    let (mut arena, mut records) = (spare.arena, spare.records);
    arena.clear();
    records.clear();
    let mut batch = Batch {
        end_offset: chunk.end_offset,
        bytes: len as u64,
        cut_lines: chunk.cut_lines,
        ..Batch::default()
    };
    // Stream offset of the first fragment of a record still waiting for its last one.
    let mut pending_since: Option<u64> = None;
    {
        let text = &data[..len];
        let mut placer = Placer {
            data: text,
            arena: &mut arena,
        };
        let base = text.as_ptr() as usize;
        for (index, (line, cut)) in capped_lines(text, spec.max_line_bytes).enumerate() {
            batch.lines += 1;
            batch.cut_lines += u64::from(cut);
            let line_offset = chunk.start_offset + (line.as_ptr() as usize - base) as u64;
            let outcome = decoder.decode(line, |record, parsed| match parsed {
                Ok(req) => {
                    let ts = req.ts.expect("the decoder rejects records without a time");
                    Ok(placer.record(&req, ts, record))
                }
                // Raw text: whoever shows it escapes it for its medium.
                Err(err) => Err(format!(
                    "{err}: {}",
                    String::from_utf8_lossy(&record[..record.len().min(SAMPLE_BYTES)])
                )),
            });
            match outcome {
                None => {
                    pending_since.get_or_insert(line_offset);
                }
                Some(result) => {
                    if !decoder.has_pending() {
                        pending_since = None;
                    }
                    match result {
                        Ok(record) => records.push(record),
                        Err(sample) => {
                            batch.unparsed += 1;
                            if batch.samples.len() < SAMPLES_PER_BATCH {
                                batch.samples.push((index as u64, sample));
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(offset) = pending_since {
        // End of what the reader had: the record's fragments are counted, not analysed.
        batch.incomplete += 1;
        batch.unparsed += 1;
        batch.end_offset = offset;
        if batch.samples.len() < SAMPLES_PER_BATCH {
            batch.samples.push((
                batch.lines.saturating_sub(1),
                "container record without its final fragment at end of input".into(),
            ));
        }
    }
    batch.cut_lines += decoder.truncated();
    // The scratch past `len` is only a reusable allocation; records never point there.
    batch.data = data;
    batch.arena = arena;
    batch.records = records;
    batch
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
            (batch.lines, batch.unparsed, batch.records.len()),
            (2, 1, 1)
        );
        assert!(batch.samples[0].1.contains("not a log line"));
        let record = &batch.records[0];
        let req = batch.request(record, "f.log");
        let direct = preset("combined")
            .unwrap()
            .parse(&text[..text.len() - 16])
            .unwrap();
        assert_eq!(req.path, direct.path);
        assert_eq!(req.user.as_deref(), Some(&b"alice"[..]));
        assert_eq!(req.status, Some(404));
        assert_eq!(req.source, Some("f.log"));
        assert!(batch.arena.is_empty(), "plain text needs no copy");
        assert!(batch.line(record).starts_with(b"203.0.113.9"));
    }

    #[test]
    fn joined_container_records_live_in_the_arena() {
        let text = b"2025-03-10T14:10:00.1Z stdout P 203.0.113.45 - - [10/Mar/2025:14:10:00 +0000] \"GET /a\n2025-03-10T14:10:00.1Z stdout F bc HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\"\n";
        let batch = decode(chunk(text), &spec("combined"), Spare::default());
        assert_eq!(batch.records.len(), 1);
        let req = batch.request(&batch.records[0], "-");
        assert_eq!(req.path.as_deref(), Some(&b"/abc"[..]));
        assert!(!batch.arena.is_empty());
        assert_eq!(batch.end_offset, 1000 + text.len() as u64);
    }

    #[test]
    fn a_partial_record_at_the_end_is_counted_and_holds_the_offset() {
        let full = b"2025-03-10T14:10:00.1Z stdout F 203.0.113.45 - - [10/Mar/2025:14:10:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"\n";
        let partial = b"2025-03-10T14:10:01.1Z stdout P 203.0.113.45 - - [10/Mar/2025:14:10:01 +0000] \"GET /a\n";
        let text = [&full[..], &partial[..]].concat();
        let batch = decode(chunk(&text), &spec("combined"), Spare::default());
        assert_eq!(batch.records.len(), 1);
        assert_eq!((batch.incomplete, batch.unparsed), (1, 1));
        assert_eq!(batch.end_offset, 1000 + full.len() as u64);
    }
}
