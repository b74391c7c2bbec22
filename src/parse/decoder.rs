//! Physical line → record → `Request`: unwraps container wrappers, joins partial
//! fragments, parses, and falls back to the wrapper's time when the format has none.

use std::borrow::Cow;
use std::sync::Arc;

use super::client_ip::TrustedProxies;
use super::container::{unwrap_line, Joiner};
use super::{ParseError, Parser};
use crate::event::{Request, Timestamp};

pub struct Decoder {
    parser: Arc<dyn Parser>,
    joiner: Joiner,
    trusted: TrustedProxies,
    /// Requests whose peer was a trusted proxy (so the client came from the forwarded
    /// chain): none with trusted proxies set means they name no peer of this log.
    proxied: std::cell::Cell<u64>,
}

impl Decoder {
    pub fn new(parser: Box<dyn Parser>) -> Self {
        Decoder::shared(Arc::from(parser))
    }

    /// A decoder over a parser shared with other decoders (one per chunk, on several threads).
    pub fn shared(parser: Arc<dyn Parser>) -> Self {
        Decoder {
            parser,
            joiner: Joiner::default(),
            trusted: TrustedProxies::default(),
            proxied: std::cell::Cell::new(0),
        }
    }

    /// Joined container records longer than this are cut (and counted).
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.joiner = Joiner::new(max);
        self
    }

    /// A partial container record waits for its last fragment.
    pub fn has_pending(&self) -> bool {
        self.joiner.has_pending()
    }

    /// Resolves each record's client behind these proxies (see `TrustedProxies`).
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    pub fn format(&self) -> &str {
        self.parser.name()
    }

    /// Requests so far whose peer was one of the trusted proxies.
    pub fn proxied(&self) -> u64 {
        self.proxied.get()
    }

    /// Records cut at the joiner's size cap so far.
    pub fn truncated(&self) -> u64 {
        self.joiner.truncated
    }

    /// Decodes one physical line and hands the record and its parse to `each`. Returns
    /// `None` (and calls nothing) while a partial record waits for its last fragment.
    pub fn decode<T>(
        &mut self,
        line: &[u8],
        each: impl FnOnce(&[u8], Result<Request<'_>, ParseError>) -> T,
    ) -> Option<T> {
        match self.record(line)? {
            Err(err) => Some(each(line, Err(err))),
            Ok((record, wrapper_ts)) => {
                let parsed = self.parse(&record, wrapper_ts);
                Some(each(&record, parsed))
            }
        }
    }

    /// The first half of `decode`: unwraps a container wrapper and joins partial fragments.
    /// Gives the whole record (borrowed from the line, or joined) and the wrapper's time;
    /// `None` while a partial record waits for its last fragment.
    #[allow(clippy::type_complexity)]
    pub fn record<'l>(
        &mut self,
        line: &'l [u8],
    ) -> Option<Result<(Cow<'l, [u8]>, Option<Timestamp>), ParseError>> {
        match unwrap_line(line) {
            None => Some(Ok((Cow::Borrowed(line), None))),
            Some(Err(err)) => Some(Err(err.into())),
            Some(Ok(unwrapped)) => {
                let ts = unwrapped.ts;
                Some(Ok((self.joiner.push(unwrapped)?, Some(ts))))
            }
        }
    }

    /// The second half of `decode`: parses a whole record, falls back to the wrapper's time
    /// and resolves the client behind trusted proxies.
    pub fn parse<'r>(
        &self,
        record: &'r [u8],
        wrapper_ts: Option<Timestamp>,
    ) -> Result<Request<'r>, ParseError> {
        let mut req = Request::default();
        self.parse_into(record, wrapper_ts, &mut req)?;
        Ok(req)
    }

    /// `parse` into a request already in place (`out` starts as the default).
    pub fn parse_into<'r>(
        &self,
        record: &'r [u8],
        wrapper_ts: Option<Timestamp>,
        out: &mut Request<'r>,
    ) -> Result<(), ParseError> {
        self.parser.parse_into(record, out)?;
        out.ts = out.ts.or(wrapper_ts);
        if out.ts.is_none() {
            return Err(ParseError::NoTimestamp);
        }
        if !self.trusted.is_empty() || out.client_ip.is_none() {
            if out
                .client_ip
                .is_some_and(|peer| self.trusted.contains(&peer))
            {
                self.proxied.set(self.proxied.get() + 1);
            }
            self.trusted.resolve(out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::preset;

    #[test]
    fn cri_partials_are_joined_before_parsing() {
        let mut decoder = Decoder::new(preset("combined").unwrap());
        let first = br#"2025-03-10T14:10:00.1Z stdout P 203.0.113.45 - - [10/Mar/2025:14:10:00 +0000] "GET /a"#;
        let last = br#"2025-03-10T14:10:00.1Z stdout F bc HTTP/1.1" 200 612 "-" "curl/8.5.0""#;
        assert!(decoder.decode(first, |_, _| ()).is_none());
        let path = decoder
            .decode(last, |_, parsed| parsed.unwrap().path.unwrap().into_owned())
            .unwrap();
        assert_eq!(path, b"/abc");
    }

    #[test]
    fn wrapper_errors_are_parse_errors() {
        let mut decoder = Decoder::new(preset("combined").unwrap());
        let result = decoder.decode(br#"{"log":1}"#, |_, parsed| parsed.is_err());
        assert_eq!(result, Some(true));
    }
}
