//! The waiters' slots: one per parked fiber, in a `Slab`, so the waiting
//! fiber's stack only holds a `Copy` id and a stale id can never reach a
//! reused slot.

use std::os::fd::RawFd;

use crate::selector::slab::{Key, Slab};

/// A waiter's slot.
pub type WaiterId = Key;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Waiting,
    /// Made ready with these events; the loop has yet to resume it, or it
    /// has yet to take its slot back.
    Ready(i32),
}

pub struct Waiter<T> {
    pub state: State,
    pub fd: RawFd,
    pub wanted: i32,
    refs: T,
}

pub struct Waiters<T> {
    slots: Slab<Waiter<T>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters { slots: Slab::default() }
    }
}

impl<T> Waiters<T> {
    /// A new waiting slot for `wanted` on `fd`.
    pub fn insert(&mut self, fd: RawFd, wanted: i32, refs: T) -> WaiterId {
        self.slots.insert(Waiter { state: State::Waiting, fd, wanted, refs })
    }

    /// The live waiter `id` names, if any.
    pub fn get(&self, id: WaiterId) -> Option<&Waiter<T>> {
        self.slots.get(id)
    }

    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut Waiter<T>> {
        self.slots.get_mut(id)
    }

    pub fn refs(&self, id: WaiterId) -> Option<&T> {
        self.get(id).map(|waiter| &waiter.refs)
    }

    /// Free the slot (its id goes stale) and hand its refs back.
    pub fn release(&mut self, id: WaiterId) -> Option<T> {
        self.slots.remove(id).map(|waiter| waiter.refs)
    }

    /// The union of what the waiters `ids` want.
    pub fn union(&self, ids: &[WaiterId]) -> i32 {
        ids.iter().filter_map(|id| self.get(*id)).fold(0, |acc, waiter| acc | waiter.wanted)
    }

    /// Every live waiter's refs, to change.
    pub fn all_refs_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|(_, waiter)| &mut waiter.refs)
    }

    /// Every live waiter's refs (for marking).
    pub fn all_refs(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|(_, waiter)| &waiter.refs)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn index(id: WaiterId) -> (u32, u32) {
        id.parts()
    }
}
