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
}
