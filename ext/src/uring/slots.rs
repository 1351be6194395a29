//! The op table: one slot per in-flight kernel operation, in a `Slab`.
//!
//! A slot owns everything the kernel may touch (or that must stay marked) until
//! the operation's final completion is reaped. The waiting fiber's stack only
//! holds a `Copy` `OpHandle` (the slot's key); all state lives here.
//!
//! `user_data` is the key's `u64` form (`generation << 32 | index`), which
//! never has bit 63 set, so a sentinel (see `ring.rs`) never decodes as a
//! slot, and a late completion for a reused index is recognised by its
//! generation.

use std::collections::VecDeque;

use crate::selector::slab::{Key, Slab};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHandle(Key);

impl OpHandle {
    pub fn user_data(self) -> u64 {
        self.0.to_u64()
    }

    /// The handle a `user_data` names, or `None` for a sentinel.
    pub fn decode(user_data: u64) -> Option<OpHandle> {
        Key::from_u64(user_data).map(OpHandle)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// No such op (never was, or its slot was freed).
    Free,
    /// Pushed to the ring; the waiter is (about to be) parked.
    Pending,
    /// The completion arrived; the waiter has not picked it up yet.
    Completed { result: i32 },
    /// The waiter left (interrupted); the slot keeps its payload until the
    /// completion arrives, then frees itself and resumes nobody.
    Orphaned,
}

struct Slot<T> {
    state: Lifecycle,
    refs: T,
}

pub struct Slots<T> {
    slots: Slab<Slot<T>>,
    /// Completed ops whose fibers the loop must resume, oldest first.
    ready: VecDeque<OpHandle>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { slots: Slab::default(), ready: VecDeque::new() }
    }
}

impl<T> Slots<T> {
    /// A slot for an op whose fiber parks: its completion queues it.
    pub fn insert(&mut self, refs: T) -> OpHandle {
        OpHandle(self.slots.insert(Slot { state: Lifecycle::Pending, refs }))
    }

    pub fn state(&self, handle: OpHandle) -> Lifecycle {
        self.slots.get(handle.0).map_or(Lifecycle::Free, |slot| slot.state)
    }

    fn release(&mut self, handle: OpHandle) -> Option<T> {
        self.slots.remove(handle.0).map(|slot| slot.refs)
    }

    /// Record a completion. Returns true when a waiter was queued to resume.
    pub fn complete(&mut self, user_data: u64, result: i32) -> bool {
        let Some(handle) = OpHandle::decode(user_data) else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(handle.0) else {
            // A stale generation: nobody to tell.
            return false;
        };
        match slot.state {
            Lifecycle::Pending => {
                slot.state = Lifecycle::Completed { result };
                self.ready.push_back(handle);
                true
            }
            Lifecycle::Orphaned => {
                self.release(handle);
                false
            }
            // A second completion: nobody to tell.
            Lifecycle::Free | Lifecycle::Completed { .. } => false,
        }
    }

    /// The waiter's side: take the result and free the slot if it completed
    /// (its references are dropped here).
    pub fn take_completed(&mut self, handle: OpHandle) -> Option<i32> {
        match self.state(handle) {
            Lifecycle::Completed { result } => {
                self.slots.delete(handle.0);
                Some(result)
            }
            _ => None,
        }
    }

    /// Free the slot of an op that never reached the submission queue.
    pub fn discard(&mut self, handle: OpHandle) {
        if self.state(handle) == Lifecycle::Pending {
            self.release(handle);
        }
    }

    /// The waiter left while its op is still in flight: keep the payload until
    /// the completion arrives. `strip` may drop references that need not live on.
    pub fn orphan(&mut self, handle: OpHandle, strip: impl FnOnce(&mut T)) {
        if let Some(slot) = self.slots.get_mut(handle.0) {
            if slot.state == Lifecycle::Pending {
                slot.state = Lifecycle::Orphaned;
                strip(&mut slot.refs);
            }
        }
    }

    /// The next completed op to resume, with its refs (the fiber among them).
    /// The next completed op whose fiber waits, taking at most `budget`
    /// positions of the ready queue (some may have been taken by another
    /// route already).
    pub fn next_ready(&mut self, budget: &mut usize) -> Option<&T> {
        while *budget > 0 {
            *budget -= 1;
            let handle = self.ready.pop_front()?;
            if matches!(self.state(handle), Lifecycle::Completed { .. }) {
                return self.slots.get(handle.0).map(|slot| &slot.refs);
            }
        }
        None
    }

    /// How many positions the ready queue has now.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether completed ops wait for their fibers to be resumed.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Every op still in flight in the kernel (pending or orphaned).
    pub fn in_flight(&self) -> impl Iterator<Item = OpHandle> + '_ {
        self.slots.iter().filter_map(|(key, slot)| Self::is_in_flight(slot).then_some(OpHandle(key)))
    }

    /// References of every op still in flight in the kernel.
    pub fn in_flight_refs(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|(_, slot)| Self::is_in_flight(slot).then_some(&slot.refs))
    }

    fn is_in_flight(slot: &Slot<T>) -> bool {
        matches!(slot.state, Lifecycle::Pending | Lifecycle::Orphaned)
    }

    /// References of every op whose slot is live (for marking).
    pub fn waiting_refs(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|(_, slot)| &slot.refs)
    }

    /// Drop every slot, first handing each op still in flight to `leak`,
    /// which keeps (leaks) what the kernel may still use.
    pub fn clear_leaking(&mut self, mut leak: impl FnMut(&mut T)) {
        for (_, slot) in self.slots.iter_mut() {
            if Self::is_in_flight(slot) {
                leak(&mut slot.refs);
            }
        }
        self.clear();
    }

    /// Drop every slot (after the kernel is done with all of them).
    pub fn clear(&mut self) {
        for key in self.slots.keys() {
            self.slots.remove(key);
        }
        self.ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_then_take_frees_the_slot() {
        let mut slots = Slots::default();
        let handle = slots.insert("fiber");
        assert!(slots.complete(handle.user_data(), 5));
        assert_eq!(slots.next_ready(&mut 1), Some(&"fiber"));
        assert_eq!(slots.take_completed(handle), Some(5));
        assert!(slots.is_empty());
        assert_eq!(slots.state(handle), Lifecycle::Free);
    }

    #[test]
    fn orphan_then_complete_frees_without_resuming() {
        let mut slots = Slots::default();
        let handle = slots.insert(7);
        slots.orphan(handle, |_| {});
        assert_eq!(slots.take_completed(handle), None);
        assert!(!slots.complete(handle.user_data(), -125));
        assert!(slots.is_empty());
        assert_eq!(slots.next_ready(&mut 1), None);
    }

    #[test]
    fn stale_generation_is_ignored() {
        let mut slots = Slots::default();
        let old = slots.insert(1);
        slots.complete(old.user_data(), 0);
        slots.take_completed(old);
        let new = slots.insert(2);
        assert_eq!(old.0.parts().0, new.0.parts().0, "the index is reused");
        assert_ne!(old, new, "with a new generation");
        assert!(!slots.complete(old.user_data(), 0), "nobody is resumed");
        assert_eq!(slots.state(new), Lifecycle::Pending);
    }

    #[test]
    fn sentinels_never_decode() {
        assert_eq!(OpHandle::decode(1 << 63), None);
        assert_eq!(OpHandle::decode(u64::MAX), None);
        let mut slots: Slots<u8> = Slots::default();
        assert!(!slots.complete(1 << 63 | 1, 0));
    }

    #[test]
    fn in_flight_lists_pending_and_orphaned() {
        let mut slots = Slots::default();
        let a = slots.insert(1);
        let b = slots.insert(2);
        let c = slots.insert(3);
        slots.orphan(b, |_| {});
        slots.complete(c.user_data(), 0);
        let live: Vec<_> = slots.in_flight().collect();
        assert_eq!(live, vec![a, b]);
        slots.clear();
        assert!(slots.is_empty());
    }
}
