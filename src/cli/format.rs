//! `--format` / `--log-format` / `--trusted-proxies`: how an input's lines are read.

use clap::Args;

use crate::parse::{
    detect_format, preset, unwrap_line, Decoder, JsonFields, Leniency, LogFormat, MappedJson,
    Parser, TrustedProxies, PRESET_NAMES,
};

/// Lines sampled from the start of each input for `--format auto`.
pub use crate::pipeline::SAMPLE_LINES;

#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// Log format: auto (chosen per input from its first lines), ingress-nginx, traefik,
    /// combined, envoy (and Istio text), traefik-json or envoy-json.
    /// Container wrappers (CRI, Docker json-file) are detected per line whatever the format.
    #[arg(long, default_value = "auto")]
    format: String,
    /// An nginx `log_format` string (e.g. '$remote_addr [$time_local] "$request" $status');
    /// overrides --format.
    #[arg(long, value_name = "NGINX_LOG_FORMAT")]
    log_format: Option<String>,
    /// A JSON access log with your own keys: `field=key,…` over the fields ts (required),
    /// client_ip, method, path, query, protocol, status, bytes_sent, duration_s|_ms|_ns,
    /// user, user_agent, referer, host, route, upstream, x_forwarded_for, request_id.
    /// Overrides --format.
    #[arg(long, value_name = "FIELD=KEY,…", value_parser = JsonFields::parse, conflicts_with = "log_format")]
    json_fields: Option<JsonFields>,
    /// Our own proxies/load balancers (CIDRs or addresses, comma-separated): the client is
    /// the right-most X-Forwarded-For address (or peer) outside them.
    #[arg(long, value_name = "CIDR,…", value_parser = TrustedProxies::parse, default_value = "")]
    trusted_proxies: TrustedProxies,
}

/// The parser for a preset name, or an error that lists the names.
fn named_parser(name: &str) -> anyhow::Result<Box<dyn Parser>> {
    preset(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown --format {name:?}; known formats: auto, {}",
            PRESET_NAMES.join(", ")
        )
    })
}

/// A forced format that reads under half of an input's first lines is a mistake when
/// another preset reads more of them, or when it reads none: refuse it, saying what
/// auto-detection would pick. Otherwise the other lines are another kind of log in the same
/// stream (a container's nginx error log beside its access log, a controller's start-up
/// messages): they are counted as unparsed, and the access lines are read.
fn check_forced(parser: &dyn Parser, flag: &str, sample: &[Vec<u8>]) -> anyhow::Result<()> {
    let parsed = sample.iter().filter(|l| parser.parse(l).is_ok()).count();
    if sample.is_empty() || parsed * 2 >= sample.len() {
        return Ok(());
    }
    let found = detect_format(sample.iter().map(Vec::as_slice));
    let hint = match found {
        Some(found) if found.parsed <= parsed && parsed > 0 => return Ok(()),
        Some(found) if flag == format!("--format {}", found.format) => {
            "no other preset reads more of them: is this an access log? (--log-format \
             describes other layouts)"
                .to_string()
        }
        Some(found) => format!(
            "auto-detection would pick {} ({}/{} lines): use --format {} or --format auto",
            found.format, found.parsed, found.sampled, found.format
        ),
        None if parsed > 0 => return Ok(()),
        None => "no preset reads them either: describe the lines with --log-format".into(),
    };
    anyhow::bail!(
        "{flag} parses {parsed} of the first {} lines; {hint}",
        sample.len()
    )
}

/// Unwraps container wrappers from sample lines, for format detection.
fn unwrapped_sample(lines: &[&[u8]]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .filter_map(|line| match unwrap_line(line) {
            None => Some(line.to_vec()),
            Some(Ok(unwrapped)) if !unwrapped.partial => Some(unwrapped.inner.into_owned()),
            Some(_) => None,
        })
        .collect()
}

impl FormatArgs {
    /// The same choices from a config file's source section.
    pub fn from_config(source: &crate::config::SourceConfig) -> FormatArgs {
        FormatArgs {
            format: source.format.clone(),
            log_format: source.log_format.clone(),
            json_fields: source.json_fields.clone(),
            trusted_proxies: source.trusted_proxies.clone(),
        }
    }

    pub fn trusted_proxies(&self) -> TrustedProxies {
        self.trusted_proxies.clone()
    }

    /// A decoder for one input: container unwrapping, `parser`, client resolution.
    pub fn decoder(&self, parser: Box<dyn Parser>) -> Decoder {
        Decoder::new(parser).with_trusted_proxies(self.trusted_proxies.clone())
    }

    /// Resolves the parser for one input from its first lines. Returns the parser and a
    /// note saying how it was chosen.
    pub fn choose(&self, sample: &[&[u8]]) -> anyhow::Result<(Box<dyn Parser>, String)> {
        let unwrapped = unwrapped_sample(sample);
        let forced: Option<(Box<dyn Parser>, String, String)> =
            if let Some(format) = &self.log_format {
                let parser = LogFormat::compile("log-format", format, Leniency::default())
                    .map_err(|e| anyhow::anyhow!("--log-format: {e}"))?;
                Some((
                    Box::new(parser),
                    "custom (--log-format)".into(),
                    "--log-format".into(),
                ))
            } else if let Some(fields) = &self.json_fields {
                Some((
                    Box::new(MappedJson::new(fields.clone())),
                    "json (--json-fields)".into(),
                    "--json-fields".into(),
                ))
            } else if self.format != "auto" {
                Some((
                    named_parser(&self.format)?,
                    format!("{} (--format)", self.format),
                    format!("--format {}", self.format),
                ))
            } else {
                None
            };
        if let Some((parser, note, flag)) = forced {
            check_forced(parser.as_ref(), &flag, &unwrapped)?;
            return Ok((parser, note));
        }
        match detect_format(unwrapped.iter().map(Vec::as_slice)) {
            Some(found) => Ok((
                named_parser(found.format)?,
                format!(
                    "{} (auto: parsed {}/{} sample lines)",
                    found.format, found.parsed, found.sampled
                ),
            )),
            None if sample.is_empty() => {
                Ok((named_parser("combined")?, "combined (empty input)".into()))
            }
            None => anyhow::bail!(
                "--format auto: none of the formats ({}) parses any of the first {} lines; \
                 name one with --format or --log-format",
                PRESET_NAMES.join(", "),
                sample.len()
            ),
        }
    }
}
