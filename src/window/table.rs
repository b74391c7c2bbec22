//! Per-key state bounded by an LRU, so memory stays flat however many keys a log has.
//!
//! Every request looks its key up in several tables, so the layout is chosen for the cache:
//! states live in one slab, the index holds 4-byte slot numbers, and the recency list is a
//! separate dense array of links. Refreshing a key's recency then touches a few bytes of
//! that array (which stays in cache) instead of the neighbours' states, as a list of
//! separately allocated nodes does.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

/// No slot: the end of the recency list.
const NIL: u32 = u32::MAX;

struct Slot<K, S> {
    key: K,
    state: S,
}

/// A slot's place in the recency list. Its key's hash is not kept (8 bytes a key): it is
/// recomputed from the key on the rare eviction or index growth.
#[derive(Clone, Copy)]
struct Link {
    newer: u32,
    older: u32,
}

/// A map from key to state that forgets the least recently seen key when full.
pub struct KeyTable<K: Hash + Eq, S> {
    slots: Vec<Slot<K, S>>,
    links: Vec<Link>,
    index: HashTable<u32>,
    hasher: RandomState,
    newest: u32,
    oldest: u32,
    capacity: usize,
    evictions: u64,
}

impl<K: Hash + Eq, S> KeyTable<K, S> {
    pub fn new(capacity: NonZeroUsize) -> Self {
        // Slot numbers are u32 (NIL excluded): a table of 4 billion keys is not bounded memory.
        let capacity = capacity.get().min(NIL as usize - 1);
        KeyTable {
            slots: Vec::new(),
            links: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::default(),
            newest: NIL,
            oldest: NIL,
            capacity,
            evictions: 0,
        }
    }

    /// The key's state, created with `make` if absent (evicting the oldest key when full).
    pub fn get_or_insert(&mut self, key: K, make: impl FnOnce() -> S) -> &mut S {
        let hash = self.hasher.hash_one(&key);
        let slot = match self.find(hash, &key) {
            Some(slot) => {
                self.touch(slot);
                slot
            }
            None => self.insert_new(hash, key, make()),
        };
        &mut self.slots[slot as usize].state
    }

    /// The key's state without refreshing its recency.
    pub fn peek_mut(&mut self, key: &K) -> Option<&mut S> {
        let hash = self.hasher.hash_one(key);
        let slot = self.find(hash, key)?;
        Some(&mut self.slots[slot as usize].state)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.find(self.hasher.hash_one(key), key).is_some()
    }

    /// Every key and its state, least recently seen first.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = (&K, &S)> {
        let mut next = self.oldest;
        std::iter::from_fn(move || {
            if next == NIL {
                return None;
            }
            let slot = &self.slots[next as usize];
            next = self.links[next as usize].newer;
            Some((&slot.key, &slot.state))
        })
    }

    /// Puts back a saved key as the most recently seen one (evicting the oldest key when
    /// full): restoring keys oldest first rebuilds the table's recency order.
    pub fn restore(&mut self, key: K, state: S) {
        let hash = self.hasher.hash_one(&key);
        match self.find(hash, &key) {
            // The same key again replaces its state; only another key is an eviction.
            Some(slot) => {
                self.slots[slot as usize].state = state;
                self.touch(slot);
            }
            None => {
                self.insert_new(hash, key, state);
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn find(&self, hash: u64, key: &K) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&slot| slots[slot as usize].key == *key)
            .copied()
    }

    /// Stores a key that is not in the table, in a new slot or in the oldest key's.
    fn insert_new(&mut self, hash: u64, key: K, state: S) -> u32 {
        let slot = if self.slots.len() < self.capacity {
            if self.slots.len() == self.slots.capacity() {
                // Doubling, but never past the capacity: a full table wastes no memory.
                let more = self
                    .slots
                    .len()
                    .max(16)
                    .min(self.capacity - self.slots.len());
                self.slots.reserve_exact(more);
                self.links.reserve_exact(more);
            }
            self.slots.push(Slot { key, state });
            self.links.push(Link {
                newer: NIL,
                older: NIL,
            });
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.oldest;
            self.unlink(victim);
            let old_hash = self.hasher.hash_one(&self.slots[victim as usize].key);
            if let Ok(entry) = self.index.find_entry(old_hash, |&slot| slot == victim) {
                entry.remove();
            }
            self.slots[victim as usize] = Slot { key, state };
            self.evictions += 1;
            victim
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&other| {
            hasher.hash_one(&slots[other as usize].key)
        });
        self.push_newest(slot);
        slot
    }

    /// Makes `slot` the most recently seen.
    #[inline]
    fn touch(&mut self, slot: u32) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Link { newer, older, .. } = self.links[slot as usize];
        match newer {
            NIL => self.newest = older,
            newer => self.links[newer as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.links[older as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let link = &mut self.links[slot as usize];
        link.newer = NIL;
        link.older = self.newest;
        match self.newest {
            NIL => self.oldest = slot,
            newest => self.links[newest as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

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

    #[derive(Debug, Clone)]
    enum Op {
        Get(u8),
        Peek(u8),
        Restore(u8, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24).prop_map(Op::Get),
            (0u8..24).prop_map(Op::Peek),
            (0u8..24, any::<u32>()).prop_map(|(k, v)| Op::Restore(k, v)),
        ]
    }

    proptest! {
        /// The table against a plain model: a deque of (key, state), oldest first.
        #[test]
        fn behaves_as_an_exact_lru(capacity in 1usize..10, ops in proptest::collection::vec(op(), 0..300)) {
            let mut table = KeyTable::new(NonZeroUsize::new(capacity).unwrap());
            let mut model: VecDeque<(u8, u32)> = VecDeque::new();
            let mut evictions = 0u64;
            for op in ops {
                match op {
                    Op::Get(key) => {
                        let state = table.get_or_insert(key, || 0);
                        *state += 1;
                        let value = match model.iter().position(|(k, _)| *k == key) {
                            Some(at) => model.remove(at).unwrap().1 + 1,
                            None => {
                                if model.len() == capacity {
                                    model.pop_front();
                                    evictions += 1;
                                }
                                1
                            }
                        };
                        model.push_back((key, value));
                    }
                    Op::Peek(key) => {
                        let expected = model.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                        prop_assert_eq!(table.peek_mut(&key).map(|v| *v), expected);
                        prop_assert_eq!(table.contains(&key), expected.is_some());
                    }
                    Op::Restore(key, value) => {
                        table.restore(key, value);
                        if let Some(at) = model.iter().position(|(k, _)| *k == key) {
                            model.remove(at);
                        } else if model.len() == capacity {
                            model.pop_front();
                            evictions += 1;
                        }
                        model.push_back((key, value));
                    }
                }
                let order: Vec<(u8, u32)> = table.iter_oldest_first().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(&order, &Vec::from(model.clone()));
                prop_assert_eq!(table.evictions(), evictions);
                prop_assert_eq!(table.len(), model.len());
            }
        }
    }
}
