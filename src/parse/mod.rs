//! Line → [`Request`]: the `Parser` trait, the format presets and format auto-detection.

mod client_ip;
mod container;
mod decoder;
mod intern;
mod json;
mod json_map;
mod json_out;
mod nginx;
mod presets;
mod request_line;
pub mod time;

pub use client_ip::TrustedProxies;
pub use container::{
    is_partial_fragment, unwrap_line, Joiner, Stream, Unwrapped, Wrapper, WrapperError,
};
pub use decoder::Decoder;
pub use json_map::{JsonFields, MappedJson};
pub use json_out::RequestJson;
pub use nginx::{FormatError, Leniency, LogFormat, Var};
pub use presets::{detect_format, preset, Detected, PRESET_NAMES};
pub use request_line::split_request_line;

use crate::event::Request;

/// Turns one record (already unwrapped from any container wrapper) into a [`Request`]
/// that borrows from the line.
pub trait Parser: Send + Sync {
    /// The format's name, as `--format` spells it.
    fn name(&self) -> &str;
    fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError>;

    /// `parse` into a request that is already in place (`out` starts as the default): a
    /// `Request` is ~500 bytes, and the decode threads' hot loop avoids moving it around.
    /// On error `out` holds whatever was parsed before the error.
    fn parse_into<'a>(&self, line: &'a [u8], out: &mut Request<'a>) -> Result<(), ParseError> {
        *out = self.parse(line)?;
        Ok(())
    }
}

/// Why a line is not a record of the format. Counted and sampled, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    #[error("expected {expected:?} at byte {at}")]
    Mismatch { at: usize, expected: String },
    #[error("line ends inside ${field}")]
    Truncated { field: &'static str },
    #[error("invalid ${field} at byte {at}")]
    InvalidField { field: &'static str, at: usize },
    #[error("unexpected text after the last field at byte {at}")]
    TrailingData { at: usize },
    #[error("no timestamp in the record")]
    NoTimestamp,
    #[error("invalid JSON record: {0}")]
    Json(String),
    #[error("container wrapper: {0}")]
    Wrapper(#[from] WrapperError),
}
