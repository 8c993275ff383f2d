//! Fetches under way: the ban number each one began at. Such an object is stored only when its
//! body is complete, so no pass of the lurker can test it yet; the bans made since its fetch
//! began must stay active until it is stored (and then tested on its first lookup or by the
//! next pass).

use std::collections::BTreeMap;

use parking_lot::Mutex;

#[derive(Default)]
pub struct Fetching {
    /// Ban number a fetch began at → fetches under way from it.
    began: Mutex<BTreeMap<u64, usize>>,
}

impl Fetching {
    /// Registers a fetch that began at ban number `checked`, until the guard is dropped.
    pub fn begin(&'static self, checked: u64) -> Fetch {
        *self.began.lock().entry(checked).or_default() += 1;
        Fetch { set: self, checked }
    }

    /// The lowest ban number a fetch under way began at.
    pub fn oldest(&self) -> Option<u64> {
        self.began.lock().keys().next().copied()
    }
}

/// One fetch under way (stored, or given up, when dropped).
pub struct Fetch {
    set: &'static Fetching,
    checked: u64,
}

impl Drop for Fetch {
    fn drop(&mut self) {
        let mut began = self.set.began.lock();
        if let Some(n) = began.get_mut(&self.checked) {
            *n -= 1;
            if *n == 0 {
                began.remove(&self.checked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_fetch_under_way_is_known_until_it_ends() {
        let f: &'static Fetching = Box::leak(Box::default());
        assert_eq!(f.oldest(), None);
        let a = f.begin(3);
        let b = f.begin(5);
        let c = f.begin(3);
        assert_eq!(f.oldest(), Some(3));
        drop(a);
        assert_eq!(f.oldest(), Some(3), "another fetch began at 3");
        drop(c);
        assert_eq!(f.oldest(), Some(5));
        drop(b);
        assert_eq!(f.oldest(), None);
    }
}
