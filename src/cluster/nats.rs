//! Connecting to NATS and the JetStream objects a cluster shares: the events stream (one
//! subject per partition), the leases bucket and the settings bucket (the token key).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};

use crate::config::{ClusterConfig, NatsAuth};

/// How long a lease (or a member's presence) lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// Events are kept this long (forensics, an analyzer days behind).
const RETENTION: Duration = Duration::from_secs(24 * 3600);

pub struct Cluster {
    pub config: ClusterConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Cluster {
    pub async fn connect(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("gatewatch {}", config.name))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));
        match &config.auth {
            NatsAuth::None => {}
            NatsAuth::Token(token) => options = options.token(token.clone()),
            NatsAuth::CredentialsFile(path) => {
                options = options
                    .credentials_file(path)
                    .await
                    .with_context(|| format!("cluster.credentials_file {}", path.display()))?
            }
        }
        let client = options
            .connect(config.nats_url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
        let js = jetstream::new(client.clone());
        let cluster = Cluster {
            config: config.clone(),
            client,
            js,
        };
        cluster.events_stream().await?;
        Ok(cluster)
    }

    pub fn subject(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.config.stream)
    }

    /// The stream of events (created by whichever member comes first).
    pub async fn events_stream(&self) -> anyhow::Result<stream::Stream> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{}.p.*", self.config.stream)],
                retention: stream::RetentionPolicy::Limits,
                max_age: RETENTION,
                storage: stream::StorageType::File,
                // A publish retried after a lost acknowledgement is dropped by its id.
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .with_context(|| format!("JetStream stream {}", self.config.stream))
    }

    /// The bucket of partition leases and member presence (entries expire unless renewed).
    pub async fn leases(&self) -> anyhow::Result<kv::Store> {
        self.key_value(&format!("{}-leases", self.config.stream), LEASE_TTL)
            .await
    }

    /// A key-value bucket, created if missing. Its stream is created here, not by
    /// `create_key_value`, whose account query fails against NATS servers before 2.10
    /// (Debian 12 ships 2.9): the stream is what a bucket is.
    async fn key_value(&self, bucket: &str, max_age: Duration) -> anyhow::Result<kv::Store> {
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                // The server refuses a duplicate window longer than the age limit.
                duplicate_window: if max_age.is_zero() {
                    Duration::from_secs(120)
                } else {
                    max_age.min(Duration::from_secs(120))
                },
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("JetStream key-value bucket {bucket}"))?;
        self.js
            .get_key_value(bucket)
            .await
            .with_context(|| format!("JetStream key-value bucket {bucket}"))
    }

    /// The token fingerprint key every agent must share: created once by the first member
    /// that needs it, then read by all.
    pub async fn shared_token_key(&self) -> anyhow::Result<std::sync::Arc<[u8]>> {
        let store = self
            .key_value(&format!("{}-settings", self.config.stream), Duration::ZERO)
            .await?;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("random token key: {e}"))?;
        // Whoever creates it first wins; everyone reads the winner's key.
        let _ = store
            .create("token_key", bytes::Bytes::copy_from_slice(&fresh))
            .await;
        let key = store
            .get("token_key")
            .await
            .context("reading the cluster's token key")?
            .context("the cluster's token key is missing")?;
        Ok(std::sync::Arc::from(&key[..]))
    }
}
