//! A map keyed by descriptor number, stored as a vector indexed by it:
//! descriptor numbers are small and dense (the kernel hands out the lowest
//! free one), so a lookup is an index, not a hash.

use std::os::fd::RawFd;

pub struct ByNumber<D> {
    slots: Vec<Option<D>>,
    len: usize,
}

impl<D> Default for ByNumber<D> {
    fn default() -> Self {
        ByNumber { slots: Vec::new(), len: 0 }
    }
}

/// Where `fd`'s value lives. A negative number has none: look-ups answer
/// `None`, as for any number never stored. They come from the kernel too (an
/// epoll event's data, which a foreign entry may have set to anything).
fn index(fd: RawFd) -> Option<usize> {
    usize::try_from(fd).ok()
}

impl<D> ByNumber<D> {
    pub fn get(&self, fd: &RawFd) -> Option<&D> {
        self.slots.get(index(*fd)?)?.as_ref()
    }

    pub fn get_mut(&mut self, fd: &RawFd) -> Option<&mut D> {
        self.slots.get_mut(index(*fd)?)?.as_mut()
    }

    /// The value at `fd`, made with `Default` if there is none.
    pub fn entry_or_default(&mut self, fd: RawFd) -> &mut D
    where
        D: Default,
    {
        let at = index(fd).expect("only open descriptors (never negative) are stored");
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        let slot = &mut self.slots[at];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(D::default)
    }

    pub fn remove(&mut self, fd: &RawFd) -> Option<D> {
        let removed = self.slots.get_mut(index(*fd)?)?.take();
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    #[cfg(test)]
    pub fn contains_key(&self, fd: &RawFd) -> bool {
        self.get(fd).is_some()
    }

    /// The numbers that have a value, in order.
    pub fn keys(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.slots.iter().enumerate().filter(|(_, slot)| slot.is_some()).map(|(at, _)| at as RawFd)
    }

    pub fn values(&self) -> impl Iterator<Item = &D> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// Keep the values for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut D) -> bool) {
        for slot in &mut self.slots {
            if slot.as_mut().is_some_and(|value| !keep(value)) {
                *slot = None;
                self.len -= 1;
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut map = ByNumber::<i32>::default();
        assert!(map.is_empty());
        *map.entry_or_default(3) += 7;
        *map.entry_or_default(3) += 1;
        *map.entry_or_default(0) = 1;
        assert_eq!(map.get(&3), Some(&8));
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&100), None);
        assert_eq!(map.keys().collect::<Vec<_>>(), vec![0, 3]);
        map.retain(|value| *value > 1);
        assert_eq!(map.values().collect::<Vec<_>>(), vec![&8]);
        assert_eq!(map.remove(&3), Some(8));
        assert_eq!(map.remove(&3), None);
        assert!(map.is_empty());
        assert!(!map.contains_key(&3));
    }

    #[test]
    fn a_negative_number_has_no_value() {
        let mut map = ByNumber::<i32>::default();
        *map.entry_or_default(0) = 1;
        assert_eq!(map.get(&-1), None);
        assert_eq!(map.get_mut(&i32::MIN), None);
        assert_eq!(map.remove(&-1), None);
        assert!(!map.is_empty());
        assert_eq!(map.get(&0), Some(&1));
    }
}
