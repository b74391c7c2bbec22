//! Checkpoints: per source group and file fingerprint, the input offset up to which every
//! line is processed and its incident events stored. A restart resumes each file there.

use sqlx::Row;

use super::{Store, StoreError};
use crate::clock::wall_clock;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The configured source group's name.
    pub source: String,
    pub fingerprint: String,
    /// Where the file was last seen (for people; the fingerprint is the key).
    pub path: String,
    pub offset: u64,
}

impl Store {
    /// Saves checkpoints in one transaction. An offset never moves back: an older writer's
    /// late save cannot undo a newer one.
    pub async fn save_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let now = wall_clock().nanos();
        let mut tx = self.pool.begin().await?;
        for c in checkpoints {
            sqlx::query(
                "INSERT INTO checkpoints (source, fingerprint, path, byte_offset, updated_at_wall_ns) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (source, fingerprint) DO UPDATE SET \
                 path = excluded.path, updated_at_wall_ns = excluded.updated_at_wall_ns, \
                 byte_offset = CASE WHEN excluded.byte_offset > checkpoints.byte_offset \
                     THEN excluded.byte_offset ELSE checkpoints.byte_offset END",
            )
            .bind(c.source.as_str())
            .bind(c.fingerprint.as_str())
            .bind(c.path.as_str())
            .bind(i64::try_from(c.offset).unwrap_or(i64::MAX))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every saved checkpoint.
    pub async fn load_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT source, fingerprint, path, byte_offset FROM checkpoints")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    source: row.try_get("source")?,
                    fingerprint: row.try_get("fingerprint")?,
                    path: row.try_get("path")?,
                    offset: row.try_get::<i64, _>("byte_offset")?.max(0) as u64,
                })
            })
            .collect()
    }
}
