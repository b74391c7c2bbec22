//! Partition leases in a JetStream key-value bucket whose entries expire (`LEASE_TTL`)
//! unless renewed: `member.NAME` says an analyzer is alive, `partition.N` says who owns
//! partition N. Each analyzer aims at its share (partitions / live members, rounded up):
//! it takes free partitions while below it and hands back its last ones while above, so
//! partitions spread over the live analyzers and a dead one's are taken over once its
//! leases expire.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use futures_util::StreamExt as _;

pub struct Leases {
    kv: kv::Store,
    name: String,
    partitions: u32,
    /// Owned partitions and the revision of our last write of each.
    owned: BTreeMap<u32, u64>,
}

/// What a round of renewing changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Newly owned: start them.
    pub gained: Vec<u32>,
    /// Someone else holds them now (our lease lapsed): stop them without saving.
    pub lost: Vec<u32>,
    /// Over our share: stop them (saving), then `release`.
    pub surplus: Vec<u32>,
}

fn partition_key(p: u32) -> String {
    format!("partition.{p}")
}

impl Leases {
    pub fn new(kv: kv::Store, name: String, partitions: u32) -> Leases {
        Leases {
            kv,
            name,
            partitions,
            owned: BTreeMap::new(),
        }
    }

    pub fn owned(&self) -> impl Iterator<Item = u32> + '_ {
        self.owned.keys().copied()
    }

    /// Renews presence and leases, takes free partitions up to our share.
    pub async fn round(&mut self) -> anyhow::Result<Round> {
        let mut round = Round::default();
        self.kv
            .put(format!("member.{}", self.name), self.name.clone().into())
            .await?;
        let members = self.live_members().await?.max(1);
        for (p, revision) in std::mem::take(&mut self.owned) {
            match self
                .kv
                .update(partition_key(p), self.name.clone().into(), revision)
                .await
            {
                Ok(revision) => {
                    self.owned.insert(p, revision);
                }
                Err(err) => {
                    tracing::warn!(partition = p, error = %err, "partition lease lost");
                    round.lost.push(p);
                }
            }
        }
        let share = self.partitions.div_ceil(members as u32) as usize;
        if self.owned.len() > share {
            round.surplus = self
                .owned
                .keys()
                .rev()
                .take(self.owned.len() - share)
                .copied()
                .collect();
        }
        // Start looking at a place of our own, so members do not all race for partition 0.
        let start = super::partition::of_route(&self.name, self.partitions);
        for i in 0..self.partitions {
            if self.owned.len() >= share {
                break;
            }
            let p = (start + i) % self.partitions;
            if self.owned.contains_key(&p) || round.lost.contains(&p) {
                continue;
            }
            if let Ok(revision) = self
                .kv
                .create(partition_key(p), self.name.clone().into())
                .await
            {
                self.owned.insert(p, revision);
                round.gained.push(p);
            }
        }
        Ok(round)
    }

    /// Hands partition `p` back (after its worker stopped and saved).
    pub async fn release(&mut self, p: u32) {
        if self.owned.remove(&p).is_some() {
            if let Err(err) = self.kv.delete(partition_key(p)).await {
                tracing::warn!(partition = p, error = %err, "releasing a partition failed; it lapses");
            }
        }
    }

    /// Hands every partition back and leaves (a clean stop).
    pub async fn leave(&mut self) {
        let owned: Vec<u32> = self.owned().collect();
        for p in owned {
            self.release(p).await;
        }
        let _ = self.kv.delete(format!("member.{}", self.name)).await;
    }

    async fn live_members(&self) -> anyhow::Result<usize> {
        let mut keys = self.kv.keys().await?;
        let mut n = 0;
        while let Some(key) = keys.next().await {
            if key?.starts_with("member.") {
                n += 1;
            }
        }
        Ok(n)
    }
}
