//! One shard of the disk tier's index: an open-addressing table (linear probing, backward-shift
//! deletion) of 28-byte entries, placed by the primary key alone so that every variant of a URL
//! sits in one probe run (a purge finds them all without a scan). It grows by half when three
//! quarters full, so it is between half and three quarters full once grown: 37–56 bytes an
//! object.

use super::index::{Id, Meta};

/// An entry as stored: the id, the object's size, the ban number it was last checked at, and
/// 48 bits of recency plus 16 of write generation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Packed {
    id: [u32; 3],
    size: u32,
    checked: u32,
    tick_lo: u32,
    /// High 16 bits: the tick's bits 32..48; low 16 bits: the write generation.
    tick_hi_gen: u32,
}

const EMPTY: [u32; 3] = [0; 3];
const MIN_CAPACITY: usize = 8;

impl Packed {
    fn new(id: Id, m: Meta) -> Packed {
        let raw = id.raw();
        debug_assert_ne!(raw, EMPTY, "an id is never the empty marker");
        Packed {
            id: raw,
            size: m.size,
            checked: m.checked,
            tick_lo: m.tick as u32,
            tick_hi_gen: ((((m.tick >> 32) & 0xffff) as u32) << 16) | m.written as u32,
        }
    }

    fn id(&self) -> Id {
        Id::from_raw(self.id)
    }

    fn meta(&self) -> Meta {
        Meta {
            size: self.size,
            checked: self.checked,
            tick: ((self.tick_hi_gen >> 16) as u64) << 32 | self.tick_lo as u64,
            written: self.tick_hi_gen as u16,
        }
    }

    fn occupied(&self) -> bool {
        self.id != EMPTY
    }
}

#[derive(Default)]
pub struct Table {
    slots: Vec<Packed>,
    len: usize,
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the table holds.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Packed>()
    }

    /// Where entries of `primary` start probing (`primary` is already hash bits; mixed so that
    /// the bits that chose the shard do not matter, then mapped onto the table's length).
    fn home(&self, primary: u64) -> usize {
        let mixed = primary.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((mixed as u128 * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    fn find(&self, id: Id) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let raw = id.raw();
        let mut i = self.home(id.primary);
        loop {
            let s = &self.slots[i];
            if !s.occupied() {
                return None;
            }
            if s.id == raw {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    pub fn get(&self, id: Id) -> Option<Meta> {
        self.find(id).map(|i| self.slots[i].meta())
    }

    /// Changes an entry in place; false if it is not there.
    pub fn update(&mut self, id: Id, f: impl FnOnce(&mut Meta)) -> bool {
        match self.find(id) {
            Some(i) => {
                let mut m = self.slots[i].meta();
                f(&mut m);
                self.slots[i] = Packed::new(id, m);
                true
            }
            None => false,
        }
    }

    /// Sets `id`'s entry; the one it replaced.
    pub fn insert(&mut self, id: Id, m: Meta) -> Option<Meta> {
        if let Some(i) = self.find(id) {
            let old = self.slots[i].meta();
            self.slots[i] = Packed::new(id, m);
            return Some(old);
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mut i = self.home(id.primary);
        while self.slots[i].occupied() {
            i = self.next(i);
        }
        self.slots[i] = Packed::new(id, m);
        self.len += 1;
        None
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() + self.slots.len() / 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![Packed::default(); cap]);
        self.len = 0;
        for p in old.into_iter().filter(Packed::occupied) {
            let mut i = self.home(p.id().primary);
            while self.slots[i].occupied() {
                i = self.next(i);
            }
            self.slots[i] = p;
            self.len += 1;
        }
    }

    pub fn remove(&mut self, id: Id) -> Option<Meta> {
        let i = self.find(id)?;
        Some(self.remove_at(i))
    }

    /// Empties slot `i`, then moves back the entries of its probe run that may (backward-shift
    /// deletion: no tombstones, lookups stay short).
    fn remove_at(&mut self, mut i: usize) -> Meta {
        let gone = self.slots[i].meta();
        self.slots[i] = Packed::default();
        self.len -= 1;
        let mut j = self.next(i);
        while self.slots[j].occupied() {
            let home = self.home(self.slots[j].id().primary);
            // `j`'s entry may move to the hole at `i` unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = self.slots[j];
                self.slots[j] = Packed::default();
                i = j;
            }
            j = self.next(j);
        }
        gone
    }

    /// Every entry of one primary key (all its variants).
    pub fn of_primary(&self, primary: u64) -> Vec<Id> {
        let mut out = Vec::new();
        if self.slots.is_empty() {
            return out;
        }
        let mut i = self.home(primary);
        while self.slots[i].occupied() {
            let id = self.slots[i].id();
            if id.primary == primary {
                out.push(id);
            }
            i = self.next(i);
        }
        out
    }

    /// The first entry at or after position `at` (wrapping): a random sample when `at` is.
    pub fn sample(&self, at: usize) -> Option<(Id, Meta)> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len();
        (0..n)
            .map(|k| &self.slots[(at + k) % n])
            .find(|s| s.occupied())
            .map(|s| (s.id(), s.meta()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (Id, Meta)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.occupied())
            .map(|s| (s.id(), s.meta()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u32) -> Meta {
        Meta {
            size,
            checked: 3,
            tick: (0xabcd << 32) | 0x1234_5678,
            written: 0xbeef,
        }
    }

    #[test]
    fn an_entry_is_28_bytes_and_keeps_every_field() {
        assert_eq!(std::mem::size_of::<Packed>(), 28);
        let id = Id {
            primary: 7,
            variance: 9,
        };
        assert_eq!(Packed::new(id, meta(5)).meta(), meta(5));
        assert_eq!(Packed::new(id, meta(5)).id(), id);
    }

    /// Many ids sharing few primaries (variants), inserted and removed in a mixed order: the
    /// table always agrees with a plain map, and every variant of a primary is found.
    #[test]
    fn agrees_with_a_map_through_inserts_and_removals() {
        use std::collections::BTreeMap;
        let mut t = Table::default();
        let mut model = BTreeMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u32 {
            let r = rnd();
            // Few distinct primaries (so runs and collisions happen), each with a few variants.
            let id = Id {
                primary: (r % 700) + 1,
                variance: ((r >> 20) % 4) as u32,
            };
            if r >> 60 < 5 {
                assert_eq!(t.remove(id), model.remove(&id), "step {step}");
            } else {
                assert_eq!(
                    t.insert(id, meta(step)),
                    model.insert(id, meta(step)),
                    "step {step}"
                );
            }
            assert_eq!(t.len(), model.len());
        }
        for (id, m) in &model {
            assert_eq!(t.get(*id), Some(*m));
        }
        for p in 1..=700u64 {
            let mut found = t.of_primary(p);
            found.sort();
            let want: Vec<Id> = model.keys().filter(|i| i.primary == p).copied().collect();
            assert_eq!(found, want, "primary {p}");
        }
        assert_eq!(t.iter().count(), model.len());
        // Between half and three quarters full.
        assert!(t.len() * 4 <= t.slots.len() * 3 && t.len() * 2 >= t.slots.len() / 2);
        let (id, _) = t.sample(t.slots.len() - 1).unwrap();
        assert!(model.contains_key(&id));
        assert!(t.update(id, |m| m.checked = 99));
        assert_eq!(t.get(id).unwrap().checked, 99);
    }
}
