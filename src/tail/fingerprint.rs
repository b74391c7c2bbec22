//! A file's identity: a checksum of its first line (at most `FINGERPRINT_BYTES`), as
//! Vector does. Inode numbers are reused as soon as a file is deleted, and a rotated file
//! keeps its content under a new name (and, gzipped, a new inode), so the content is what
//! names a file. Device and inode serve only as a cheap hint.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// Bytes of the first line that identify a file.
pub const FINGERPRINT_BYTES: usize = 1024;

/// A file's identity, as 16 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a file lives on disk (a hint only: numbers are reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevIno {
    pub dev: u64,
    pub ino: u64,
}

impl DevIno {
    pub fn of(meta: &std::fs::Metadata) -> DevIno {
        DevIno {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The fingerprint of the (decompressed) head of a stream: `None` until the first line is
/// complete or `FINGERPRINT_BYTES` long, so a file being written is not named by half a line.
pub fn of_head(head: &[u8]) -> Option<Fingerprint> {
    let line = match memchr::memchr(b'\n', head) {
        Some(end) => &head[..end.min(FINGERPRINT_BYTES)],
        None if head.len() >= FINGERPRINT_BYTES => &head[..FINGERPRINT_BYTES],
        None => return None,
    };
    let digest = Sha256::digest(line);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Some(Fingerprint(hex))
}

/// Reads the head of an open file (with positioned reads: its cursor stays put) and
/// fingerprints it. Gzip content is fingerprinted decompressed, so a rotated file that the
/// kubelet compressed keeps its identity.
pub fn of_file(file: &File) -> io::Result<Option<Fingerprint>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; FINGERPRINT_BYTES + 1];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read_at(&mut head[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    if head.starts_with(&[0x1f, 0x8b]) {
        return of_gzip(file);
    }
    Ok(of_head(&head))
}

fn of_gzip(file: &File) -> io::Result<Option<Fingerprint>> {
    let reader = PositionedReader { file, at: 0 };
    let mut decoder = BufReader::new(MultiGzDecoder::new(reader));
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES + 1);
    (&mut decoder)
        .take(FINGERPRINT_BYTES as u64 + 1)
        .read_until(b'\n', &mut head)?;
    Ok(of_head(&head))
}

/// Reads a file from offset 0 with positioned reads (its shared cursor stays put).
struct PositionedReader<'a> {
    file: &'a File,
    at: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// True when the file starts with the gzip magic bytes.
pub fn is_gzip(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    Ok(file.read_at(&mut magic, 0)? == 2 && magic == [0x1f, 0x8b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_first_line_names_the_file() {
        assert_eq!(of_head(b"half a li"), None, "no full line yet");
        let a = of_head(b"line one\nline two\n").unwrap();
        assert_eq!(Some(a.clone()), of_head(b"line one\nother\n"));
        assert_ne!(Some(a.clone()), of_head(b"line 1\n"));
        assert_eq!(a.0.len(), 16);
        let long = vec![b'x'; FINGERPRINT_BYTES + 10];
        assert!(of_head(&long).is_some(), "a long first line is cut");
    }

    #[test]
    fn a_gzipped_file_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"2026 first line\nsecond\n";
        let plain = dir.path().join("a.log");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("a.log.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap();
        let plain = of_file(&File::open(plain).unwrap()).unwrap();
        let gz_file = File::open(gz).unwrap();
        assert!(is_gzip(&gz_file).unwrap());
        assert_eq!(plain, of_file(&gz_file).unwrap());
        assert!(plain.is_some());
    }
}
