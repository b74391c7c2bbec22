//! The JSON shape `gatewatch parse` prints for a [`Request`]: the parse contract's field
//! names (shared with the conformance suite), absent fields left out, times in RFC 3339 UTC.

use serde::Serialize;

use crate::event::{Request, Text};

/// The Request with the field names of the parse contract; absent fields are left out.
#[derive(Serialize)]
pub struct RequestJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_forwarded_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn lossy(text: &Option<Text<'_>>) -> Option<String> {
    text.as_deref()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

impl From<&Request<'_>> for RequestJson {
    fn from(req: &Request<'_>) -> Self {
        RequestJson {
            ts: req.ts.map(|ts| ts.to_rfc3339()),
            client_ip: req.client_ip.map(|ip| ip.to_string()),
            method: lossy(&req.method),
            path: lossy(&req.path),
            query: lossy(&req.query),
            request_line: lossy(&req.request_line),
            http_version: lossy(&req.http_version),
            status: req.status,
            bytes_sent: req.bytes_sent,
            user: lossy(&req.user),
            user_agent: lossy(&req.user_agent),
            referer: lossy(&req.referer),
            host: lossy(&req.host),
            duration_ms: req.duration_ns.map(|ns| ns as f64 / 1e6),
            route: lossy(&req.route),
            upstream: lossy(&req.upstream),
            x_forwarded_for: lossy(&req.x_forwarded_for),
            request_id: lossy(&req.request_id),
        }
    }
}
