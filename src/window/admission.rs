//! Admission to a bounded key table, as TinyLFU's doorkeeper does it: a key's first weak
//! signal only sets a bit; its second (before the bitmap is reset) admits it. A flood of
//! one-off keys (110,000 addresses sending one 404 each) then never reaches the table, so it
//! cannot evict the keys that matter (a slow scanner's), and costs a fixed 128 KiB.

/// Bits in the doorkeeper (a power of two).
const BITS_LOG2: u32 = 20;

pub struct Doorkeeper {
    bits: Vec<u64>,
    set: usize,
    /// Reset when this many bits are set: false "seen before" answers stay rare.
    limit: usize,
}

impl Default for Doorkeeper {
    fn default() -> Self {
        let words = (1usize << BITS_LOG2) / 64;
        Doorkeeper {
            bits: vec![0; words],
            set: 0,
            limit: (1usize << BITS_LOG2) / 2,
        }
    }
}

impl Doorkeeper {
    /// True when `hash` was seen since the last reset; otherwise remembers it.
    pub fn seen_before(&mut self, hash: u64) -> bool {
        let index = (hash as usize) & ((1usize << BITS_LOG2) - 1);
        let (word, bit) = (index / 64, index % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return true;
        }
        self.bits[word] |= 1 << bit;
        self.set += 1;
        if self.set >= self.limit {
            self.bits.fill(0);
            self.set = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_sighting_is_admitted_across_a_flood_of_one_offs() {
        let mut door = Doorkeeper::default();
        assert!(!door.seen_before(42));
        for n in 0..110_000u64 {
            door.seen_before(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63);
        }
        assert!(door.seen_before(42), "remembered through 110,000 others");
    }

    #[test]
    fn the_bitmap_resets_before_it_fills() {
        let mut door = Doorkeeper::default();
        for n in 0..2_000_000u64 {
            door.seen_before(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert!(door.set < door.limit);
    }
}
