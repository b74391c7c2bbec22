//! Reading whole inputs at full speed: files (gzip detected by its magic bytes) or stdin,
//! cut into chunks of whole lines. Every line is bounded by `max_line_bytes`: a longer one is
//! cut there and the rest discarded as it streams by, so neither memory nor time grows with
//! the length of one line.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

/// Bytes read per chunk when nothing smaller is asked for.
pub const DEFAULT_CHUNK: usize = 1 << 20;
/// The longest line kept by default; longer ones are cut and counted.
pub const DEFAULT_MAX_LINE: usize = 64 << 10;
/// The sniffing buffer under the chunk reader (gzip magic).
const SNIFF: usize = 64 << 10;
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Bytes asked of the underlying reader at a time.
const READ: usize = 64 << 10;

/// Counts the raw bytes read from the underlying file (before decompression), for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened input: its reader, its size when known, and a live count of raw bytes read.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn Read + Send>,
    pub size: Option<u64>,
    pub raw_bytes: Arc<AtomicU64>,
    pub gzip: bool,
    /// Stream offset of the reader's first byte (a followed file resumed at a checkpoint).
    pub offset: u64,
}

/// What a live reader returns (as an `io::Error` of this payload) when told to stop: the
/// chunk reader then ends without handing on the incomplete line it holds.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Stopped {}

/// True for the error a live reader returns when told to stop.
pub fn is_stopped(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

/// Opens `-` (stdin) or a path; gzip content is decompressed whatever the file is called.
pub fn open(path: &str) -> io::Result<Input> {
    let raw_bytes = Arc::new(AtomicU64::new(0));
    let (inner, size): (Box<dyn Read + Send>, _) = if path == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let file = File::open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let counting = Counting {
        inner,
        count: raw_bytes.clone(),
    };
    let (reader, gzip) = maybe_gunzip(BufReader::with_capacity(SNIFF, counting))?;
    Ok(Input {
        name: path.to_string(),
        reader,
        size,
        raw_bytes,
        gzip,
        offset: 0,
    })
}

fn maybe_gunzip<R: io::BufRead + Send + 'static>(
    mut reader: R,
) -> io::Result<(Box<dyn Read + Send>, bool)> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(MultiGzDecoder::new(reader)), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// Whole lines of an input, each ending in `\n` (but perhaps the input's last), with where
/// they sit in the (decompressed) stream.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The lines are `data[..len]`; the rest is scratch kept so the buffer is not zeroed again
    /// when it is reused.
    pub data: Vec<u8>,
    pub len: usize,
    /// Stream offset of `data[0]`'s line.
    pub start_offset: u64,
    /// Stream offset just past the last line (over cut and BOM bytes too).
    pub end_offset: u64,
    /// Lines in this chunk that were cut at `max_line_bytes`.
    pub cut_lines: u64,
    /// No more data follows.
    pub last: bool,
}

/// Cuts a reader into chunks of whole lines. Each byte is scanned a bounded number of times,
/// so one line of any length costs linear time and at most `max_line` bytes of memory.
pub struct ChunkReader<R> {
    inner: R,
    chunk: usize,
    max_line: usize,
    /// The start of a line not yet complete, carried into the next chunk.
    carry: Vec<u8>,
    /// Bytes of the stream consumed into chunks or discarded.
    offset: u64,
    /// Discarding the rest of a line already cut.
    skipping: bool,
    at_start: bool,
    eof: bool,
}

impl Chunk {
    /// The chunk's lines, each ending in `\n` (but perhaps the input's last).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl<R: Read> ChunkReader<R> {
    /// `chunk` is a target size; `max_line` is raised to at least 1 and `chunk` to at least
    /// twice `max_line`, so one whole line always fits.
    pub fn new(inner: R, chunk: usize, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        ChunkReader {
            inner,
            chunk: chunk.max(2 * max_line).max(4096),
            max_line,
            carry: Vec::new(),
            offset: 0,
            skipping: false,
            at_start: true,
            eof: false,
        }
    }

    /// Offsets count from `offset` (the reader starts there in its stream, e.g. a file
    /// resumed at a checkpoint: no byte order mark is looked for then).
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self.at_start = offset == 0;
        self
    }

    /// The next chunk, `None` once the input is exhausted. `buf` is a recycled buffer
    /// (its contents are overwritten; keeping its length spares zeroing it again).
    pub fn next_chunk(&mut self, mut buf: Vec<u8>) -> io::Result<Option<Chunk>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        // Room for a full chunk plus one more read (reading stops once `chunk` is reached,
        // and the carried open line is under half a chunk); bytes past `filled` are scratch.
        let room = self.chunk + READ;
        if buf.len() < room {
            buf.resize(room, 0);
        }
        let start_offset = self.offset;
        let mut consumed = self.carry.len() as u64;
        buf[..self.carry.len()].copy_from_slice(&self.carry);
        let mut filled = self.carry.len();
        self.carry.clear();
        let mut cut_lines = 0;
        // Where the line still open at the end of the filled part begins.
        let mut line_start = memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1);
        while filled < self.chunk && !self.eof {
            let n = match self.read_at(&mut buf[filled..filled + READ]) {
                Ok(n) => n,
                // A live reader caught up: hand on the whole lines we have, or wait on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if record_start(&buf[..line_start]) > 0 {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            consumed += n as u64;
            let mut fresh = filled..filled + n;
            if self.skipping {
                match memchr::memchr(b'\n', &buf[fresh.clone()]) {
                    Some(i) => {
                        self.skipping = false;
                        fresh.start += i + 1;
                    }
                    None => continue,
                }
            }
            // Close the gap left by skipped bytes (rare: a BOM or a cut line's tail).
            if fresh.start != filled {
                buf.copy_within(fresh.clone(), filled);
            }
            let mut before = filled;
            filled += fresh.len();
            if self.at_start && filled >= BOM.len() {
                // A UTF-8 byte order mark (from editors, Windows tools) is not part of line 1.
                self.at_start = false;
                if buf.starts_with(BOM) {
                    buf.copy_within(BOM.len()..filled, 0);
                    filled -= BOM.len();
                    before = before.saturating_sub(BOM.len());
                }
            }
            if let Some(i) = memchr::memrchr(b'\n', &buf[before..filled]) {
                line_start = before + i + 1;
            }
            // The open line (it has no newline yet) is too long: keep its head as a line of
            // its own and drop the rest of it as it arrives.
            if filled - line_start > self.max_line {
                filled = line_start + self.max_line;
                buf[filled] = b'\n';
                filled += 1;
                cut_lines += 1;
                line_start = filled;
                self.skipping = true;
            }
            // A short read means nothing more is there yet (a pipe, a live log): hand on
            // the whole records we have rather than wait for a full chunk.
            if n < READ && record_start(&buf[..line_start]) > 0 {
                break;
            }
        }
        if !self.eof {
            // A container record's leading fragments go with its last one into the next
            // chunk: chunks are decoded apart, and a record split between two is lost.
            let split = record_start(&buf[..line_start]);
            let split = if split > 0 { split } else { line_start };
            self.carry.extend_from_slice(&buf[split..filled]);
            filled = split;
        }
        let carried = self.carry.len() as u64;
        // Discarded bytes (a BOM, cut tails) still advance the stream offset.
        self.offset += consumed - carried;
        if filled == 0 && self.eof && self.carry.is_empty() && consumed == 0 {
            return Ok(None);
        }
        // (A chunk without lines still carries the offset past bytes it discarded.)
        Ok(Some(Chunk {
            data: buf,
            len: filled,
            start_offset,
            end_offset: self.offset,
            cut_lines,
            last: self.eof && self.carry.is_empty(),
        }))
    }

    fn read_at(&mut self, into: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(into) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Where the whole lines of `lines` (each ending in `\n`) stop, leaving out the trailing
/// partial container fragments, whose record is not complete yet.
fn record_start(lines: &[u8]) -> usize {
    let mut end = lines.len();
    while end > 0 {
        let start = memchr::memrchr(b'\n', &lines[..end - 1]).map_or(0, |i| i + 1);
        if !crate::parse::is_partial_fragment(trim_cr(&lines[start..end - 1])) {
            break;
        }
        end = start;
    }
    end
}

/// The lines of a chunk without their `\n` (or `\r\n`).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    capped_lines(data, usize::MAX).map(|(line, _)| line)
}

/// The lines of a chunk, each cut to `max_line` bytes (then without a trailing `\r`), and
/// whether it was cut. The reader cuts lines it cannot see the end of; a long line that
/// arrived whole in one read is cut here.
pub fn capped_lines(data: &[u8], max_line: usize) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let cut = line.len() > max_line;
        let line = if cut { &line[..max_line] } else { line };
        Some((trim_cr(line), cut))
    })
}

pub fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Line by line over a chunk reader, for the simple consumers (`gatewatch parse`).
pub struct LineReader<R> {
    chunks: ChunkReader<R>,
    max_line: usize,
    first: Option<Chunk>,
    /// Lines cut at the line-length cap so far.
    pub cut_lines: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            chunks: ChunkReader::new(inner, DEFAULT_CHUNK, max_line),
            max_line: max_line.max(1),
            first: None,
            cut_lines: 0,
        }
    }

    /// Up to `max` first lines, without consuming them (for format detection).
    pub fn peek_lines(&mut self, max: usize) -> io::Result<Vec<&[u8]>> {
        if self.first.is_none() {
            self.first = Some(self.chunks.next_chunk(Vec::new())?.unwrap_or_default());
        }
        let first = self.first.as_ref().expect("just read");
        Ok(lines(first.bytes()).take(max).collect())
    }

    /// Calls `each` for every line.
    pub fn for_each_line(&mut self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut next = self.first.take();
        loop {
            let chunk = match next.take() {
                Some(chunk) => chunk,
                None => match self.chunks.next_chunk(Vec::new())? {
                    Some(chunk) => chunk,
                    None => return Ok(()),
                },
            };
            self.cut_lines += chunk.cut_lines;
            for (line, cut) in capped_lines(chunk.bytes(), self.max_line) {
                self.cut_lines += u64::from(cut);
                each(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, as a pipe does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn chunks_of(data: &[u8], chunk: usize, max_line: usize, step: usize) -> Vec<Chunk> {
        let mut reader = ChunkReader::new(Trickle { data, step }, chunk, max_line);
        let mut out = Vec::new();
        while let Some(c) = reader.next_chunk(Vec::new()).unwrap() {
            out.push(c);
        }
        out
    }

    /// Chunks are decoded apart: a container record's fragments (CRI `P` lines, Docker
    /// json-file lines without their newline) never end a chunk that more data follows.
    #[test]
    fn a_container_records_fragments_stay_in_one_chunk() {
        let mut data = Vec::new();
        for n in 0..400 {
            let ts = format!("2026-11-21T10:00:{:02}.{n:09}Z", n % 60);
            let line = format!("203.0.113.{} - - [21/Nov/2026:10:00:00 +0000] \"GET /p/{n} HTTP/1.1\" 200 5 \"-\" \"curl\"", n % 250);
            match n % 3 {
                0 => data.extend_from_slice(format!("{ts} stdout F {line}\n").as_bytes()),
                1 => {
                    let (head, tail) = line.split_at(20);
                    // Three fragments, the middle one empty.
                    data.extend_from_slice(
                        format!("{ts} stdout P {head}\n{ts} stdout P \n{ts} stdout F {tail}\n")
                            .as_bytes(),
                    );
                }
                _ => {
                    let (head, tail) = line.split_at(30);
                    let docker = |log: &str| {
                        serde_json::json!({"log": log, "stream": "stdout", "time": ts}).to_string()
                    };
                    data.extend_from_slice(
                        format!("{}\n{}\n", docker(head), docker(&format!("{tail}\n"))).as_bytes(),
                    );
                }
            }
        }
        for (chunk, step) in [(4096, 4096), (4096, 97), (5000, 1000)] {
            let chunks = chunks_of(&data, chunk, 1024, step);
            assert!(chunks.len() > 5, "{chunk}/{step}: {} chunks", chunks.len());
            assert_eq!(all_lines(&chunks, 1024), expected_lines(&data, 1024));
            for c in &chunks[..chunks.len() - 1] {
                let last = lines(c.bytes()).last().unwrap();
                assert!(
                    !crate::parse::is_partial_fragment(last),
                    "{chunk}/{step}: a chunk ends inside a record: {}",
                    String::from_utf8_lossy(last)
                );
            }
        }
    }

    fn all_lines(chunks: &[Chunk], max_line: usize) -> Vec<Vec<u8>> {
        chunks
            .iter()
            .flat_map(|c| capped_lines(c.bytes(), max_line).map(|(l, _)| l.to_vec()))
            .collect()
    }

    /// The lines of `data` as the reader must give them: split at `\n`, `\r` trimmed, each
    /// cut to `max_line` bytes, a leading BOM dropped.
    fn expected_lines(data: &[u8], max_line: usize) -> Vec<Vec<u8>> {
        let data = data.strip_prefix(BOM).unwrap_or(data);
        let mut out: Vec<Vec<u8>> = data
            .split(|&b| b == b'\n')
            .map(|l| l[..l.len().min(max_line)].to_vec())
            .map(|l| trim_cr(&l).to_vec())
            .collect();
        if data.is_empty() || data.ends_with(b"\n") {
            out.pop();
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any input, any read sizes: the same lines, contiguous offsets to the end.
        #[test]
        fn chunking_never_changes_the_lines(
            data in proptest::collection::vec(
                proptest::prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r'), Just(0xEFu8)], 0..3000),
            max_line in 1usize..300,
            step in 1usize..700,
        ) {
            let chunks = chunks_of(&data, 4096, max_line, step);
            let got = all_lines(&chunks, max_line);
            // A cut line keeps max_line bytes; a kept `\r` at the cut is trimmed like any.
            let expected: Vec<Vec<u8>> = expected_lines(&data, max_line);
            proptest::prop_assert_eq!(got, expected);
            let mut offset = 0;
            for chunk in &chunks {
                proptest::prop_assert_eq!(chunk.start_offset, offset);
                offset = chunk.end_offset;
            }
            proptest::prop_assert_eq!(offset, data.len() as u64);
        }
    }

    use proptest::strategy::Just;

    #[test]
    fn splits_lines_and_keeps_a_final_unterminated_one() {
        let chunks = chunks_of(b"a\r\nbb\n\nccc", 4096, 100, 3);
        assert_eq!(
            all_lines(&chunks, 100),
            vec![b"a".to_vec(), b"bb".to_vec(), vec![], b"ccc".to_vec()]
        );
        assert_eq!(chunks.last().unwrap().end_offset, 10);
        assert!(chunks.last().unwrap().last);
        assert!(chunks_of(b"", 4096, 100, 3).is_empty());
    }

    #[test]
    fn chunks_end_on_line_boundaries_and_offsets_are_contiguous() {
        let data: Vec<u8> = (0..5000)
            .flat_map(|i| format!("line number {i}\n").into_bytes())
            .collect();
        let chunks = chunks_of(&data, 4096, 100, 777);
        assert!(chunks.len() > 5);
        let mut offset = 0;
        for chunk in &chunks {
            assert_eq!(chunk.start_offset, offset);
            assert!(chunk.bytes().ends_with(b"\n"));
            assert_eq!(chunk.end_offset - chunk.start_offset, chunk.len as u64);
            offset = chunk.end_offset;
        }
        assert_eq!(offset, data.len() as u64);
        assert_eq!(all_lines(&chunks, 100).len(), 5000);
    }

    #[test]
    fn long_lines_are_cut_counted_and_skipped_through() {
        let mut data = vec![b'x'; 1_000_000];
        data.extend_from_slice(b"\nshort\n");
        data.extend(vec![b'y'; 300]);
        for step in [1 << 16, 4096, 1] {
            let chunks = chunks_of(&data, 8192, 100, step);
            let lines = all_lines(&chunks, 100);
            assert_eq!(lines.len(), 3, "step {step}");
            assert_eq!(lines[0], vec![b'x'; 100]);
            assert_eq!(lines[1], b"short");
            assert_eq!(lines[2], vec![b'y'; 100]);
            assert_eq!(chunks.iter().map(|c| c.cut_lines).sum::<u64>(), 2);
            assert_eq!(chunks.last().unwrap().end_offset, data.len() as u64);
        }
    }

    #[test]
    fn a_byte_order_mark_is_dropped_but_counted_in_offsets() {
        let chunks = chunks_of(b"\xEF\xBB\xBFfirst\nsecond\n", 4096, 100, 2);
        assert_eq!(
            all_lines(&chunks, 100),
            vec![b"first".to_vec(), b"second".to_vec()]
        );
        assert_eq!(chunks.last().unwrap().end_offset, 16);
    }

    #[test]
    fn peeking_does_not_consume() {
        let mut reader = LineReader::new(&b"one\ntwo\nthree\n"[..], 100);
        let peeked: Vec<Vec<u8>> = reader
            .peek_lines(2)
            .unwrap()
            .iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(peeked, vec![b"one".to_vec(), b"two".to_vec()]);
        let mut count = 0;
        reader.for_each_line(|_| count += 1).unwrap();
        assert_eq!(count, 3);
    }

    #[test]
    fn gzip_is_detected_by_content() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain-name.log");
        let mut encoder = GzEncoder::new(File::create(&path).unwrap(), Compression::fast());
        encoder.write_all(b"hello\nworld\n").unwrap();
        encoder.finish().unwrap();
        let input = open(path.to_str().unwrap()).unwrap();
        assert!(input.gzip);
        let mut reader = LineReader::new(input.reader, 100);
        let mut out = Vec::new();
        reader.for_each_line(|l| out.push(l.to_vec())).unwrap();
        assert_eq!(out, vec![b"hello".to_vec(), b"world".to_vec()]);
    }
}
