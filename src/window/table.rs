//! Per-key state bounded by an LRU, so memory stays flat however many keys a log has.

use std::hash::Hash;
use std::num::NonZeroUsize;

use foldhash::fast::RandomState;
use lru::LruCache;

/// A map from key to state that forgets the least recently seen key when full.
pub struct KeyTable<K: Hash + Eq, S> {
    cache: LruCache<K, S, RandomState>,
    evictions: u64,
}

impl<K: Hash + Eq, S> KeyTable<K, S> {
    pub fn new(capacity: NonZeroUsize) -> Self {
        KeyTable {
            cache: LruCache::with_hasher(capacity, RandomState::default()),
            evictions: 0,
        }
    }

    /// The key's state, created with `make` if absent (evicting the oldest key when full).
    pub fn get_or_insert(&mut self, key: K, make: impl FnOnce() -> S) -> &mut S {
        let full = self.cache.len() == self.cache.cap().get();
        let mut inserted = false;
        let state = self.cache.get_or_insert_mut(key, || {
            inserted = true;
            make()
        });
        if inserted && full {
            self.evictions += 1;
        }
        state
    }

    /// The key's state without refreshing its recency.
    pub fn peek_mut(&mut self, key: &K) -> Option<&mut S> {
        self.cache.peek_mut(key)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.cache.contains(key)
    }

    /// Every key and its state, least recently seen first.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = (&K, &S)> {
        self.cache.iter().rev()
    }

    /// Puts back a saved key as the most recently seen one (evicting the oldest key when
    /// full): restoring keys oldest first rebuilds the table's recency order.
    pub fn restore(&mut self, key: K, state: S) {
        if let Some((old, _)) = self.cache.push(key, state) {
            // `push` also hands back a key it replaced; only another key is an eviction.
            if self.cache.peek(&old).is_none() {
                self.evictions += 1;
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.cache.cap().get()
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recent_and_counts() {
        let mut table = KeyTable::new(NonZeroUsize::new(2).unwrap());
        *table.get_or_insert(1, || 0) += 1;
        *table.get_or_insert(2, || 0) += 1;
        *table.get_or_insert(1, || 0) += 1;
        *table.get_or_insert(3, || 0) += 1;
        assert_eq!(table.len(), 2);
        assert_eq!(table.evictions(), 1);
        assert!(table.peek_mut(&2).is_none(), "2 was least recent");
        assert_eq!(*table.peek_mut(&1).unwrap(), 2);
    }

    #[test]
    fn restoring_oldest_first_rebuilds_the_recency_order() {
        let mut table = KeyTable::new(NonZeroUsize::new(3).unwrap());
        for key in [1, 2, 3, 1] {
            *table.get_or_insert(key, || 0) += 1;
        }
        let saved: Vec<(i32, i32)> = table.iter_oldest_first().map(|(k, s)| (*k, *s)).collect();
        assert_eq!(saved, [(2, 1), (3, 1), (1, 2)]);
        let mut restored = KeyTable::new(NonZeroUsize::new(3).unwrap());
        for (key, state) in saved.iter().copied() {
            restored.restore(key, state);
        }
        restored.restore(3, 5);
        assert_eq!(restored.evictions(), 0, "replacing a key evicts nothing");
        let order: Vec<i32> = restored.iter_oldest_first().map(|(k, _)| *k).collect();
        assert_eq!(order, [2, 1, 3]);
        restored.restore(4, 0);
        assert!(!restored.contains(&2), "the oldest goes first");
        assert_eq!((restored.len(), restored.evictions()), (3, 1));
    }
}
