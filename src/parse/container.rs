//! Kubernetes container-runtime wrappers: CRI (`<RFC3339Nano> stdout|stderr F|P <line>`) and
//! Docker json-file (`{"log":"…\n","stream":…,"time":…}`). Detected per line, unwrapped
//! before the format parser, partial fragments joined. The wrapper's time is a fallback only.

use std::borrow::Cow;

use super::time::parse_iso8601;
use crate::event::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapper {
    Cri,
    Docker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn from_bytes(bytes: &[u8]) -> Option<Stream> {
        match bytes {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One wrapped physical line, unwrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwrapped<'a> {
    pub wrapper: Wrapper,
    /// The payload without its trailing newline.
    pub inner: Cow<'a, [u8]>,
    /// When the runtime received the bytes (not the request time).
    pub ts: Timestamp,
    pub stream: Stream,
    /// More fragments of the same record follow.
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapperError {
    #[error("CRI line without {0}")]
    Cri(&'static str),
    #[error("Docker json-file line: {0}")]
    Docker(String),
}

/// Unwraps a CRI or Docker json-file line; `None` when the line has no wrapper.
pub fn unwrap_line(line: &[u8]) -> Option<Result<Unwrapped<'_>, WrapperError>> {
    if line.starts_with(b"{\"log\":") {
        return Some(unwrap_docker(line));
    }
    if looks_like_cri(line) {
        return Some(unwrap_cri(line));
    }
    None
}

/// Whether `line` is a container record's fragment that more fragments complete (CRI `P`,
/// Docker json-file without the trailing newline): a reader cutting its input into chunks
/// keeps such a line with the rest of its record.
pub fn is_partial_fragment(line: &[u8]) -> bool {
    unwrap_line(line).is_some_and(|unwrapped| unwrapped.is_ok_and(|u| u.partial))
}

fn looks_like_cri(line: &[u8]) -> bool {
    // `2025-03-10T14:10:00.123456789Z stdout F …`: cheap shape check before parsing.
    line.len() > 30
        && line[0].is_ascii_digit()
        && line[4] == b'-'
        && line[10] == b'T'
        && memchr::memchr(b' ', &line[..40.min(line.len())]).is_some()
}

fn unwrap_cri(line: &[u8]) -> Result<Unwrapped<'_>, WrapperError> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let ts = fields
        .next()
        .and_then(parse_iso8601)
        .ok_or(WrapperError::Cri("an RFC 3339 timestamp"))?;
    let stream = fields
        .next()
        .and_then(Stream::from_bytes)
        .ok_or(WrapperError::Cri("a stdout/stderr stream"))?;
    let tags = fields.next().ok_or(WrapperError::Cri("tags"))?;
    // Tags are joined by `:`; `P` marks a partial fragment, `F` a full line or last fragment.
    let partial = tags.split(|&b| b == b':').any(|t| t == b"P");
    if !partial && !tags.split(|&b| b == b':').any(|t| t == b"F") {
        return Err(WrapperError::Cri("an F or P tag"));
    }
    let inner = fields.next().unwrap_or(b"");
    Ok(Unwrapped {
        wrapper: Wrapper::Cri,
        inner: Cow::Borrowed(inner),
        ts,
        stream,
        partial,
    })
}

#[derive(serde::Deserialize)]
struct DockerRecord<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

fn unwrap_docker(line: &[u8]) -> Result<Unwrapped<'_>, WrapperError> {
    let record: DockerRecord<'_> =
        serde_json::from_slice(line).map_err(|e| WrapperError::Docker(e.to_string()))?;
    let ts = parse_iso8601(record.time.as_bytes())
        .ok_or_else(|| WrapperError::Docker(format!("bad time {:?}", record.time)))?;
    let stream = Stream::from_bytes(record.stream.as_bytes())
        .ok_or_else(|| WrapperError::Docker(format!("bad stream {:?}", record.stream)))?;
    // Docker keeps the newline on complete lines; a split long line lacks it until the end.
    let partial = !record.log.ends_with('\n');
    let inner = match record.log {
        Cow::Borrowed(text) => Cow::Borrowed(trim_newline(text.as_bytes())),
        Cow::Owned(text) => Cow::Owned(trim_newline(text.as_bytes()).to_vec()),
    };
    Ok(Unwrapped {
        wrapper: Wrapper::Docker,
        inner,
        ts,
        stream,
        partial,
    })
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Joins partial fragments per stream until the final fragment arrives. A record that grows
/// past `max_bytes` is cut there (and `truncated` counted) so a runaway writer cannot
/// exhaust memory.
#[derive(Debug)]
pub struct Joiner {
    pending: [Vec<u8>; 2],
    /// The pending record of this stream was already cut (and counted).
    cut: [bool; 2],
    max_bytes: usize,
    pub truncated: u64,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner::new(1 << 20)
    }
}

impl Joiner {
    pub fn new(max_bytes: usize) -> Self {
        Joiner {
            pending: [Vec::new(), Vec::new()],
            cut: [false; 2],
            max_bytes,
            truncated: 0,
        }
    }

    /// Some stream holds fragments of a record whose last fragment has not arrived.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty()) || self.cut.iter().any(|&c| c)
    }

    /// Feeds one fragment; returns the whole record once its last fragment arrived.
    pub fn push<'a>(&mut self, fragment: Unwrapped<'a>) -> Option<Cow<'a, [u8]>> {
        let stream = fragment.stream as usize;
        let slot = &mut self.pending[stream];
        if !fragment.partial && slot.is_empty() {
            return Some(fragment.inner);
        }
        let room = self.max_bytes.saturating_sub(slot.len());
        if fragment.inner.len() > room {
            if !self.cut[stream] {
                self.truncated += 1;
                self.cut[stream] = true;
            }
            slot.extend_from_slice(&fragment.inner[..room]);
        } else {
            slot.extend_from_slice(&fragment.inner);
        }
        if fragment.partial {
            None
        } else {
            self.cut[stream] = false;
            Some(Cow::Owned(std::mem::take(slot)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_full_and_partial() {
        let full = unwrap_line(b"2025-03-10T14:10:00.123456789Z stdout F hello world")
            .unwrap()
            .unwrap();
        assert_eq!(full.inner.as_ref(), b"hello world");
        assert_eq!(full.stream, Stream::Stdout);
        assert!(!full.partial);
        assert_eq!(full.ts.to_rfc3339(), "2025-03-10T14:10:00.123456789Z");
        let partial = unwrap_line(b"2025-03-10T14:10:00.2Z stderr P abc")
            .unwrap()
            .unwrap();
        assert!(partial.partial);
        assert_eq!(partial.stream, Stream::Stderr);
    }

    #[test]
    fn docker_unescapes_and_strips_newline() {
        let line = br#"{"log":"1.2.3.4 \"GET / HTTP/1.1\" \u003c\n","stream":"stdout","time":"2025-03-10T14:10:00.123456789Z"}"#;
        let unwrapped = unwrap_line(line).unwrap().unwrap();
        assert_eq!(unwrapped.inner.as_ref(), br#"1.2.3.4 "GET / HTTP/1.1" <"#);
        assert!(!unwrapped.partial);
    }

    #[test]
    fn plain_lines_are_not_wrapped() {
        assert!(unwrap_line(
            b"203.0.113.45 - - [10/Mar/2025:14:02:11 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\""
        )
        .is_none());
    }

    #[test]
    fn joiner_merges_fragments_per_stream_and_caps_size() {
        let mut joiner = Joiner::new(8);
        let frag = |text: &'static [u8], stream, partial| Unwrapped {
            wrapper: Wrapper::Cri,
            inner: Cow::Borrowed(text),
            ts: Timestamp(0),
            stream,
            partial,
        };
        assert_eq!(joiner.push(frag(b"ab", Stream::Stdout, true)), None);
        assert_eq!(
            joiner
                .push(frag(b"zz", Stream::Stderr, false))
                .unwrap()
                .as_ref(),
            b"zz"
        );
        assert_eq!(
            joiner
                .push(frag(b"cd", Stream::Stdout, false))
                .unwrap()
                .as_ref(),
            b"abcd"
        );
        assert_eq!(joiner.push(frag(b"123456", Stream::Stdout, true)), None);
        let joined = joiner.push(frag(b"789", Stream::Stdout, false)).unwrap();
        assert_eq!(joined.as_ref(), b"12345678");
        assert_eq!(joiner.truncated, 1);
    }
}
