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

async fn upsert_checkpoints(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    checkpoints: &[Checkpoint],
) -> Result<(), StoreError> {
    let now = wall_clock().nanos();
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
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Saves checkpoints in one transaction. An offset never moves back: an older writer's
    /// late save cannot undo a newer one.
    pub async fn save_checkpoints(&self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        upsert_checkpoints(&mut tx, checkpoints).await?;
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

/// Rows per INSERT statement when saving learned state (4 parameters each: well under
/// SQLite's and PostgreSQL's limits).
const STATE_ROWS_PER_INSERT: usize = 1000;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values: `$n` placeholders, which both
/// backends read through the Any driver.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts state rows in multi-row statements, each followed by `on_conflict` (empty, or an
/// upsert clause).
async fn insert_state_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rows: &[crate::detect::StateRow],
    on_conflict: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(STATE_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO baselines (detector, entity, state, updated_at_ns) VALUES {}{on_conflict}",
            placeholders(chunk.len(), 4)
        );
        let mut insert = sqlx::query(&sql);
        for row in chunk {
            insert = insert
                .bind(row.detector.as_str())
                .bind(row.entity.as_str())
                .bind(row.state.as_str())
                .bind(row.updated_at.nanos());
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Saves the engine's learned state and the checkpoints it corresponds to, in one
    /// transaction: a restart resumes every file exactly where the restored state left it.
    /// The state replaces what was saved before (an incident closed since must not reopen).
    pub async fn save_state(
        &self,
        rows: &[crate::detect::StateRow],
        checkpoints: &[Checkpoint],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM baselines")
            .execute(&mut *tx)
            .await?;
        insert_state_rows(&mut tx, rows, "").await?;
        upsert_checkpoints(&mut tx, checkpoints).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves what changed in the learned state since the last save (rows `changed`, keys
    /// `gone`: evicted, or closed incidents) and the checkpoints the state corresponds to,
    /// in one transaction. The daemon's periodic save: rewriting every row of a large state
    /// each time (200,000 keys: seconds, and the database locked meanwhile) would not keep up.
    pub async fn save_state_changes(
        &self,
        changed: &[crate::detect::StateRow],
        gone: &[(String, String)],
        checkpoints: &[Checkpoint],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in gone.chunks(STATE_ROWS_PER_INSERT) {
            let sql = format!(
                "DELETE FROM baselines WHERE (detector, entity) IN (VALUES {})",
                placeholders(chunk.len(), 2)
            );
            let mut delete = sqlx::query(&sql);
            for (detector, entity) in chunk {
                delete = delete.bind(detector.as_str()).bind(entity.as_str());
            }
            delete.execute(&mut *tx).await?;
        }
        insert_state_rows(
            &mut tx,
            changed,
            " ON CONFLICT (detector, entity) DO UPDATE SET \
             state = excluded.state, updated_at_ns = excluded.updated_at_ns",
        )
        .await?;
        upsert_checkpoints(&mut tx, checkpoints).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The learned state saved last (empty before the first save).
    pub async fn load_state(&self) -> Result<Vec<crate::detect::StateRow>, StoreError> {
        let rows = sqlx::query("SELECT detector, entity, state, updated_at_ns FROM baselines")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::detect::StateRow {
                    detector: row.try_get("detector")?,
                    entity: row.try_get("entity")?,
                    state: row.try_get("state")?,
                    updated_at: crate::event::Timestamp(row.try_get("updated_at_ns")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(super::placeholders(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(super::placeholders(1, 4), "($1, $2, $3, $4)");
    }
}
