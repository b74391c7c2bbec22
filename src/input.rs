//! Reading whole inputs line by line at full speed: files (gzip detected by its magic
//! bytes) or stdin, in large chunks split with memchr.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

const CHUNK: usize = 1 << 20;
/// The sniffing buffer under the line reader. Smaller than `CHUNK` so that, once drained,
/// `BufReader` hands the line reader's large reads straight to the file (no second copy).
const SNIFF: usize = 64 << 10;

/// Counts the raw bytes read from the underlying file (before decompression), for progress.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An opened input: its reader, its size when known, and a live count of raw bytes read.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn Read>,
    pub size: Option<u64>,
    pub raw_bytes: Rc<Cell<u64>>,
}

/// Opens `-` (stdin) or a path; gzip content is decompressed whatever the file is called.
pub fn open(path: &str) -> io::Result<Input> {
    let raw_bytes = Rc::new(Cell::new(0));
    if path == "-" {
        let counting = Counting {
            inner: io::stdin().lock(),
            count: raw_bytes.clone(),
        };
        return Ok(Input {
            name: "-".into(),
            reader: maybe_gunzip(BufReader::with_capacity(SNIFF, counting))?,
            size: None,
            raw_bytes,
        });
    }
    let file = File::open(path)?;
    let size = file.metadata().ok().map(|m| m.len());
    let counting = Counting {
        inner: file,
        count: raw_bytes.clone(),
    };
    Ok(Input {
        name: path.to_string(),
        reader: maybe_gunzip(BufReader::with_capacity(SNIFF, counting))?,
        size,
        raw_bytes,
    })
}

fn maybe_gunzip<R: io::BufRead + 'static>(mut reader: R) -> io::Result<Box<dyn Read>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Splits a reader into lines (without `\n` or `\r\n`), reusing one buffer.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Decompressed bytes consumed so far.
    pub bytes: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
            bytes: 0,
        }
    }

    /// Reads more; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // A line longer than the buffer: grow rather than cut it.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Up to `max` first lines, without consuming them (for format detection).
    pub fn peek_lines(&mut self, max: usize) -> io::Result<Vec<&[u8]>> {
        while memchr::memchr_iter(b'\n', &self.buf[self.start..self.end]).count() < max
            && self.end - self.start < CHUNK
            && self.fill()?
        {}
        let pending = &self.buf[self.start..self.end];
        let mut lines: Vec<&[u8]> = pending.split(|&b| b == b'\n').map(trim_cr).collect();
        if pending.ends_with(b"\n") {
            lines.pop();
        }
        lines.truncate(max);
        Ok(lines)
    }

    /// Calls `each` for every line; `chunk_done` after each chunk (for progress).
    pub fn for_each_line(
        &mut self,
        mut each: impl FnMut(&[u8]),
        mut chunk_done: impl FnMut(u64),
    ) -> io::Result<()> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let mut consumed = 0;
            for newline in memchr::memchr_iter(b'\n', pending) {
                each(trim_cr(&pending[consumed..newline]));
                consumed = newline + 1;
            }
            self.start += consumed;
            self.bytes += consumed as u64;
            chunk_done(self.bytes);
            if !self.fill()? {
                break;
            }
        }
        if self.start < self.end {
            // Last line without a trailing newline.
            let rest = &self.buf[self.start..self.end];
            each(trim_cr(rest));
            self.bytes += rest.len() as u64;
            self.start = self.end;
        }
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = LineReader::new(data);
        let mut out = Vec::new();
        reader
            .for_each_line(|line| out.push(line.to_vec()), |_| {})
            .unwrap();
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_final_unterminated_one() {
        assert_eq!(
            lines_of(b"a\r\nbb\n\nccc"),
            vec![b"a".to_vec(), b"bb".to_vec(), vec![], b"ccc".to_vec()]
        );
        assert_eq!(lines_of(b""), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn long_lines_grow_the_buffer() {
        let mut data = vec![b'x'; CHUNK * 3];
        data.extend_from_slice(b"\nshort\n");
        let lines = lines_of(&data);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), CHUNK * 3);
    }

    #[test]
    fn peeking_does_not_consume() {
        let mut reader = LineReader::new(&b"one\ntwo\nthree\n"[..]);
        let peeked: Vec<Vec<u8>> = reader
            .peek_lines(2)
            .unwrap()
            .iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(peeked, vec![b"one".to_vec(), b"two".to_vec()]);
        let mut count = 0;
        reader.for_each_line(|_| count += 1, |_| {}).unwrap();
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
        let mut reader = LineReader::new(input.reader);
        let mut out = Vec::new();
        reader
            .for_each_line(|l| out.push(l.to_vec()), |_| {})
            .unwrap();
        assert_eq!(out, vec![b"hello".to_vec(), b"world".to_vec()]);
    }
}
