//! The learned state as last saved, so that a save writes only what changed (the daemon's
//! and a cluster analyzer's periodic saves).

use std::collections::HashMap;

use crate::detect::StateRow;

/// The learned state as the store holds it: a digest per row, so a save writes the rows
/// that changed and deletes the keys that are gone instead of rewriting every row (200,000
/// keys: over 8 s a save). About 60 bytes a key.
#[derive(Default)]
pub struct SavedState {
    rows: HashMap<String, HashMap<Box<str>, u64, DigestState>>,
}

type DigestState = foldhash::fast::FixedState;

/// A save's work: the rows to write (with their digests) and the keys to delete.
pub struct StateChanges {
    pub changed: Vec<StateRow>,
    digests: Vec<u64>,
    pub gone: Vec<(String, String)>,
}

impl SavedState {
    pub fn of(rows: &[StateRow]) -> SavedState {
        let mut saved = SavedState::default();
        for row in rows {
            saved.set(row, digest(row));
        }
        saved
    }

    fn set(&mut self, row: &StateRow, digest: u64) {
        if !self.rows.contains_key(&row.detector) {
            self.rows.insert(row.detector.clone(), HashMap::default());
        }
        let table = self.rows.get_mut(&row.detector).expect("inserted above");
        table.insert(row.entity.as_str().into(), digest);
    }

    /// What saving the engine's `rows` (a whole snapshot) must change in the store.
    pub fn changes(&self, rows: Vec<StateRow>) -> StateChanges {
        let digests: Vec<u64> = rows.iter().map(digest).collect();
        let mut known: HashMap<&str, usize> = HashMap::new();
        let mut is_changed = Vec::with_capacity(rows.len());
        for (row, digest) in rows.iter().zip(&digests) {
            let saved = self
                .rows
                .get(&row.detector)
                .and_then(|t| t.get(row.entity.as_str()));
            if saved.is_some() {
                *known.entry(row.detector.as_str()).or_default() += 1;
            }
            is_changed.push(saved != Some(digest));
        }
        // Keys are unique within a snapshot: a table with fewer of its keys in the snapshot
        // than it holds lost some (evicted, closed).
        let mut gone = Vec::new();
        for (detector, table) in &self.rows {
            if known.get(detector.as_str()).copied().unwrap_or(0) == table.len() {
                continue;
            }
            let present: std::collections::HashSet<&str> = rows
                .iter()
                .filter(|r| r.detector == *detector)
                .map(|r| r.entity.as_str())
                .collect();
            gone.extend(
                table
                    .keys()
                    .filter(|entity| !present.contains(&entity.as_ref()))
                    .map(|entity| (detector.clone(), entity.to_string())),
            );
        }
        let (mut changed, mut changed_digests) = (Vec::new(), Vec::new());
        for ((row, digest), is_changed) in rows.into_iter().zip(digests).zip(is_changed) {
            if is_changed {
                changed.push(row);
                changed_digests.push(digest);
            }
        }
        StateChanges {
            changed,
            digests: changed_digests,
            gone,
        }
    }

    /// The store now holds `changes` too.
    pub fn apply(&mut self, changes: &StateChanges) {
        for (row, &digest) in changes.changed.iter().zip(&changes.digests) {
            self.set(row, digest);
        }
        for (detector, entity) in &changes.gone {
            if let Some(table) = self.rows.get_mut(detector) {
                table.remove(entity.as_str());
            }
        }
        self.rows.retain(|_, table| !table.is_empty());
    }
}

fn digest(row: &StateRow) -> u64 {
    use std::hash::BuildHasher;
    DigestState::with_seed(0x5a7e_d16e).hash_one((row.state.as_str(), row.updated_at.nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;

    fn row(detector: &str, entity: &str, state: &str) -> StateRow {
        StateRow {
            detector: detector.into(),
            entity: entity.into(),
            state: state.into(),
            updated_at: Timestamp(1),
        }
    }

    #[test]
    fn a_save_writes_what_changed_and_deletes_what_is_gone() {
        let mut stored = SavedState::of(&[
            row("rate-spike-ip", "10.0.0.1", "{\"v\":1,\"n\":1}"),
            row("rate-spike-ip", "10.0.0.2", "{\"v\":1,\"n\":1}"),
            row("scanner-ip", "", "{\"v\":1}"),
        ]);
        let now = || {
            vec![
                row("rate-spike-ip", "10.0.0.1", "{\"v\":1,\"n\":1}"),
                row("rate-spike-ip", "10.0.0.3", "{\"v\":1,\"n\":1}"),
                row("scanner-ip", "", "{\"v\":1,\"x\":2}"),
            ]
        };
        let changes = stored.changes(now());
        let changed: Vec<(&str, &str)> = changes
            .changed
            .iter()
            .map(|r| (r.detector.as_str(), r.entity.as_str()))
            .collect();
        assert_eq!(changed, [("rate-spike-ip", "10.0.0.3"), ("scanner-ip", "")]);
        assert_eq!(
            changes.gone,
            [("rate-spike-ip".to_string(), "10.0.0.2".to_string())]
        );
        // Not applied (the save failed): the next save carries the same changes.
        assert_eq!(stored.changes(now()).changed.len(), 2);
        stored.apply(&changes);
        let again = stored.changes(now());
        assert!(again.changed.is_empty() && again.gone.is_empty());
    }
}
