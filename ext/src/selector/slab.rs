//! A generational slab: the one way values are named by a `Copy` key here.
//!
//! The ring's op slots and the EPoll waiters live in one: a fiber's stack
//! (or the kernel's `user_data`) holds only a `Key { index, generation }`,
//! and a key whose entry was removed names nothing, even after its index is
//! reused, because removing an entry bumps its generation. Generations run
//! 1..=2^31-1 and wrap back to 1, so a key's `u64` form
//! (`generation << 32 | index`) never has bit 63 set (the ring's sentinels
//! use it) and is never 0.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

const MAX_GENERATION: u32 = 0x7fff_ffff;

impl Key {
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The key a `u64` form names, or `None` if no key has that form.
    pub fn from_u64(value: u64) -> Option<Key> {
        let generation = (value >> 32) as u32;
        (1..=MAX_GENERATION).contains(&generation).then_some(Key { index: value as u32, generation })
    }

    #[cfg(test)]
    pub fn parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { entries: Vec::new(), free: Vec::new(), live: 0 }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> Key {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.entries.push(Entry { generation: 1, value: None });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[index as usize];
        entry.value = Some(value);
        self.live += 1;
        Key { index, generation: entry.generation }
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.generation == key.generation {
            entry.value.as_ref()
        } else {
            None
        }
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        if entry.generation == key.generation {
            entry.value.as_mut()
        } else {
            None
        }
    }

    /// Take the value out; `key` (and every copy of it) names nothing after.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = if entry.generation >= MAX_GENERATION { 1 } else { entry.generation + 1 };
        self.free.push(key.index);
        self.live -= 1;
        Some(value)
    }

    /// Drop the value in place; `key` (and every copy of it) names nothing
    /// after. False if it named nothing already.
    pub fn delete(&mut self, key: Key) -> bool {
        let Some(entry) = self.entries.get_mut(key.index as usize) else {
            return false;
        };
        if entry.generation != key.generation || entry.value.is_none() {
            return false;
        }
        entry.value = None;
        entry.generation = if entry.generation >= MAX_GENERATION { 1 } else { entry.generation + 1 };
        self.free.push(key.index);
        self.live -= 1;
        true
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.entries.iter().enumerate().filter_map(|(index, entry)| {
            let key = Key { index: index as u32, generation: entry.generation };
            entry.value.as_ref().map(|value| (key, value))
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.entries.iter_mut().enumerate().filter_map(|(index, entry)| {
            let key = Key { index: index as u32, generation: entry.generation };
            entry.value.as_mut().map(|value| (key, value))
        })
    }

    /// Every key in use now.
    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(key, _)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_keys_name_nothing_even_after_reuse() {
        let mut slab = Slab::default();
        let old = slab.insert("a");
        assert_eq!(slab.remove(old), Some("a"));
        assert_eq!(slab.remove(old), None, "a second remove is a no-op");
        let new = slab.insert("b");
        assert_eq!(old.parts().0, new.parts().0, "the index is reused");
        assert_ne!(old, new, "with a new generation");
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get(new), Some(&"b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn deleted_keys_name_nothing_and_drop_their_value_at_once() {
        let value = std::rc::Rc::new(());
        let mut slab = Slab::default();
        let old = slab.insert(value.clone());
        assert_eq!(std::rc::Rc::strong_count(&value), 2);
        assert!(slab.delete(old));
        assert_eq!(std::rc::Rc::strong_count(&value), 1, "dropped in place");
        assert!(!slab.delete(old), "a second delete is a no-op");
        assert!(slab.is_empty());
        let new = slab.insert(value.clone());
        assert_eq!(old.parts().0, new.parts().0, "the index is reused");
        assert!(!slab.delete(old), "a stale key deletes nothing");
        assert!(slab.get(new).is_some());
        assert_eq!(slab.remove(new).map(|v| std::rc::Rc::ptr_eq(&v, &value)), Some(true));
    }

    #[test]
    fn generations_wrap_below_bit_63_and_never_to_zero() {
        let mut slab = Slab::default();
        let key = slab.insert(0u8);
        slab.entries[0].generation = MAX_GENERATION;
        let key = Key { generation: MAX_GENERATION, ..key };
        assert_eq!(Key::from_u64(key.to_u64()), Some(key));
        assert_eq!(key.to_u64() >> 63, 0);
        slab.remove(key);
        let next = slab.insert(0);
        assert_eq!(next.parts().1, 1);
    }

    #[test]
    fn u64_forms_round_trip_and_reject_sentinels() {
        let mut slab = Slab::default();
        let key = slab.insert(());
        assert_eq!(Key::from_u64(key.to_u64()), Some(key));
        assert_eq!(Key::from_u64(1 << 63), None);
        assert_eq!(Key::from_u64(u64::MAX), None);
        assert_eq!(Key::from_u64(0), None);
    }

    #[test]
    fn iteration_sees_live_entries_only() {
        let mut slab = Slab::default();
        let a = slab.insert(1);
        let b = slab.insert(2);
        slab.insert(3);
        slab.remove(b);
        let values: Vec<_> = slab.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, vec![1, 3]);
        assert_eq!(slab.keys()[0], a);
    }
}
