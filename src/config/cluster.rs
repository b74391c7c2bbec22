//! `[cluster]`: cluster mode on NATS JetStream. Absent: standalone, as before.

use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    nats_url: Option<String>,
    stream: Option<String>,
    partitions: Option<i64>,
    role: Option<String>,
    name_env: Option<String>,
    credentials_file: Option<PathBuf>,
    token_env: Option<String>,
}

/// What this member of a cluster does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Tails and decodes, publishes events.
    Agent,
    /// Consumes partitions, detects, stores.
    Analyzer,
    /// Both in one process.
    Both,
}

impl Role {
    pub fn tails(self) -> bool {
        matches!(self, Role::Agent | Role::Both)
    }

    pub fn analyzes(self) -> bool {
        matches!(self, Role::Analyzer | Role::Both)
    }
}

/// How to reach the NATS server (never printed: the token is a secret).
#[derive(Clone, Debug, Default)]
pub enum NatsAuth {
    #[default]
    None,
    CredentialsFile(PathBuf),
    Token(String),
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nats_url: String,
    pub stream: String,
    pub partitions: u32,
    pub role: Role,
    /// This member's name, unique in the cluster (agents' message ids and analyzers'
    /// leases carry it).
    pub name: String,
    pub auth: NatsAuth,
}

pub const DEFAULT_STREAM: &str = "gatewatch";
pub const DEFAULT_PARTITIONS: u32 = 16;

pub(super) fn check_cluster(
    raw: Option<RawCluster>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<ClusterConfig> {
    let raw = raw?;
    let nats_url = raw.nats_url.unwrap_or_else(|| {
        problems.add("cluster.nats_url", "missing: e.g. \"nats://nats:4222\"");
        String::new()
    });
    if !(nats_url.is_empty() || nats_url.starts_with("nats://") || nats_url.starts_with("tls://")) {
        problems.add(
            "cluster.nats_url",
            format!("{nats_url:?}: expected nats://HOST:PORT or tls://HOST:PORT"),
        );
    }
    let stream = raw.stream.unwrap_or_else(|| DEFAULT_STREAM.into());
    // JetStream stream names: no whitespace, `.`, `*`, `>`, path separators.
    if stream.is_empty()
        || stream.len() > 64
        || stream
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        problems.add(
            "cluster.stream",
            format!("{stream:?}: 1 to 64 letters, digits, '-' or '_'"),
        );
    }
    let partitions = match raw.partitions {
        None => DEFAULT_PARTITIONS,
        Some(n @ 1..=1024) => n as u32,
        Some(n) => {
            problems.add("cluster.partitions", format!("{n}: must be 1 to 1024"));
            DEFAULT_PARTITIONS
        }
    };
    let role = match raw.role.as_deref() {
        Some("agent") => Role::Agent,
        Some("analyzer") => Role::Analyzer,
        Some("both") => Role::Both,
        other => {
            problems.add(
                "cluster.role",
                format!("{other:?}: expected \"agent\", \"analyzer\" or \"both\""),
            );
            Role::Both
        }
    };
    let name = match &raw.name_env {
        Some(var) => env(var).filter(|v| !v.is_empty()).unwrap_or_else(|| {
            problems.add(
                "cluster.name_env",
                format!("environment variable {var} is not set"),
            );
            String::new()
        }),
        None => hostname(),
    };
    // Node names are DNS names (`ip-10-0-1-2.ec2.internal`): dots are allowed. A name is
    // a key in the leases bucket, whose keys take no spaces, `*` or `>`.
    if name.len() > 128
        || name
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        problems.add(
            "cluster.name",
            format!("{name:?}: a member name is 1 to 128 letters, digits, '-', '_' or '.'"),
        );
    }
    let auth = match (raw.credentials_file, raw.token_env) {
        (Some(_), Some(_)) => {
            problems.add("cluster", "give credentials_file or token_env, not both");
            NatsAuth::None
        }
        (Some(file), None) => {
            if let Err(err) = std::fs::metadata(&file) {
                problems.add(
                    "cluster.credentials_file",
                    format!("cannot read {}: {err}", file.display()),
                );
            }
            NatsAuth::CredentialsFile(file)
        }
        (None, Some(var)) => match env(&var) {
            Some(token) if !token.is_empty() => NatsAuth::Token(token),
            _ => {
                problems.add(
                    "cluster.token_env",
                    format!("environment variable {var} is not set"),
                );
                NatsAuth::None
            }
        },
        (None, None) => NatsAuth::None,
    };
    Some(ClusterConfig {
        nats_url,
        stream,
        partitions,
        role,
        name,
        auth,
    })
}

/// The host's name, as a member name when `name_env` is not set (a pod's hostname is its
/// name).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gatewatch".into())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(std::path::Path::new("gw.toml"), text, &|name| match name {
            "POD_NAME" => Some("ip-10-0-1-2.ec2.internal".into()),
            "NATS_TOKEN" => Some("s3cret".into()),
            _ => None,
        })
    }

    const SOURCES: &str = "[[sources]]\npaths = [\"/var/log/a.log\"]\n";

    #[test]
    fn an_agent_and_an_analyzer_are_read_with_their_defaults() {
        let agent = load(&format!(
            "{SOURCES}[cluster]\nnats_url = \"nats://nats:4222\"\nrole = \"agent\"\nname_env = \"POD_NAME\"\ntoken_env = \"NATS_TOKEN\"\n"
        ))
        .unwrap();
        let cluster = agent.cluster.unwrap();
        assert_eq!(cluster.role, Role::Agent);
        assert_eq!(
            (cluster.stream.as_str(), cluster.partitions),
            (DEFAULT_STREAM, DEFAULT_PARTITIONS)
        );
        assert_eq!(cluster.name, "ip-10-0-1-2.ec2.internal");
        assert!(matches!(cluster.auth, NatsAuth::Token(ref t) if t == "s3cret"));
        let analyzer = load(
            "[cluster]\nnats_url = \"tls://nats:4222\"\nrole = \"analyzer\"\npartitions = 4\n",
        )
        .unwrap();
        assert!(analyzer.sources.is_empty());
        assert_eq!(analyzer.cluster.unwrap().partitions, 4);
        assert!(load(SOURCES).unwrap().cluster.is_none(), "standalone");
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = load(&format!(
            "{SOURCES}[cluster]\nnats_url = \"http://nats:4222\"\nrole = \"boss\"\npartitions = 0\nstream = \"a.b\"\nname_env = \"UNSET\"\ncredentials_file = \"/nonexistent/x.creds\"\ntoken_env = \"NATS_TOKEN\"\n"
        ))
        .unwrap_err()
        .to_string();
        for key in [
            "cluster.nats_url",
            "cluster.role",
            "cluster.partitions",
            "cluster.stream",
            "cluster.name_env",
            "cluster: give credentials_file or token_env",
        ] {
            assert!(err.contains(&format!("gw.toml: {key}")), "{key} in {err}");
        }
        let analyzer_with_files = load(&format!(
            "{SOURCES}[cluster]\nnats_url = \"nats://n:4222\"\nrole = \"analyzer\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(analyzer_with_files.contains("gw.toml: sources: an analyzer"));
        let agent_without_files =
            load("[cluster]\nnats_url = \"nats://n:4222\"\nrole = \"agent\"\n").unwrap_err();
        assert!(agent_without_files.to_string().contains("gw.toml: sources"));
        assert!(load(&format!(
            "{SOURCES}[cluster]\nnats_url = \"nats://n:4222\"\nrole = \"both\"\nextra = 1\n"
        ))
        .is_err());
    }
}
