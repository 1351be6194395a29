//! The op table: one slot per in-flight kernel operation.
//!
//! A slot owns everything the kernel may touch (or that must stay marked) until
//! the operation's final completion is reaped. The waiting fiber's stack only
//! holds a `Copy` `OpHandle`; all state lives here.
//!
//! `user_data` layout: `generation << 32 | index`, with bit 63 reserved for
//! sentinels (see `ring.rs`), so a sentinel never decodes as a slot and a late
//! completion for a reused index is recognised by its generation.

use std::collections::VecDeque;

const GENERATION_MASK: u32 = 0x7fff_ffff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHandle {
    index: u32,
    generation: u32,
}

impl OpHandle {
    pub fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The handle a `user_data` names, or `None` for a sentinel.
    pub fn decode(user_data: u64) -> Option<OpHandle> {
        if user_data >> 63 != 0 {
            return None;
        }
        Some(OpHandle { index: user_data as u32, generation: (user_data >> 32) as u32 })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Free,
    /// Pushed to the ring; the waiter is (about to be) parked.
    Pending,
    /// The completion arrived; the waiter has not picked it up yet.
    Completed {
        result: i32,
        flags: u32,
    },
    /// The waiter left (interrupted); the slot keeps its payload until the
    /// completion arrives, then frees itself and resumes nobody.
    Orphaned,
}

struct Slot<T> {
    generation: u32,
    state: Lifecycle,
    refs: Option<T>,
}

pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    /// Completed ops whose fibers the loop must resume, oldest first.
    ready: VecDeque<OpHandle>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { slots: Vec::new(), free: Vec::new(), live: 0, ready: VecDeque::new() }
    }
}

impl<T> Slots<T> {
    pub fn insert(&mut self, refs: T) -> OpHandle {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot { generation: 1, state: Lifecycle::Free, refs: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.state = Lifecycle::Pending;
        slot.refs = Some(refs);
        self.live += 1;
        OpHandle { index, generation: slot.generation }
    }

    fn slot(&self, handle: OpHandle) -> Option<&Slot<T>> {
        self.slots
            .get(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation && slot.state != Lifecycle::Free)
    }

    fn slot_mut(&mut self, handle: OpHandle) -> Option<&mut Slot<T>> {
        self.slots
            .get_mut(handle.index as usize)
            .filter(|slot| slot.generation == handle.generation && slot.state != Lifecycle::Free)
    }

    pub fn state(&self, handle: OpHandle) -> Lifecycle {
        self.slot(handle).map_or(Lifecycle::Free, |slot| slot.state)
    }

    fn release(&mut self, handle: OpHandle) -> Option<T> {
        let slot = self.slot_mut(handle)?;
        slot.state = Lifecycle::Free;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        if slot.generation == 0 {
            slot.generation = 1;
        }
        let refs = slot.refs.take();
        self.free.push(handle.index);
        self.live -= 1;
        refs
    }

    /// Record a completion. Returns true when a waiter was queued to resume.
    pub fn complete(&mut self, user_data: u64, result: i32, flags: u32) -> bool {
        let Some(handle) = OpHandle::decode(user_data) else {
            return false;
        };
        match self.state(handle) {
            Lifecycle::Pending => {
                if let Some(slot) = self.slot_mut(handle) {
                    slot.state = Lifecycle::Completed { result, flags };
                }
                self.ready.push_back(handle);
                true
            }
            Lifecycle::Orphaned => {
                self.release(handle);
                false
            }
            // A stale generation or a second completion: nobody to tell.
            Lifecycle::Free | Lifecycle::Completed { .. } => false,
        }
    }

    /// The waiter's side: take the result and free the slot if it completed.
    pub fn take_completed(&mut self, handle: OpHandle) -> Option<(i32, u32, T)> {
        match self.state(handle) {
            Lifecycle::Completed { result, flags } => self.release(handle).map(|refs| (result, flags, refs)),
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
        if let Some(slot) = self.slot_mut(handle) {
            if slot.state == Lifecycle::Pending {
                slot.state = Lifecycle::Orphaned;
                if let Some(refs) = slot.refs.as_mut() {
                    strip(refs);
                }
            }
        }
    }

    /// The next completed op to resume, with its refs (the fiber among them).
    pub fn next_ready(&mut self) -> Option<&T> {
        while let Some(handle) = self.ready.pop_front() {
            if matches!(self.state(handle), Lifecycle::Completed { .. }) {
                let index = handle.index as usize;
                return self.slots[index].refs.as_ref();
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether completed ops wait for their fibers to be resumed.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Every op still in flight in the kernel (pending or orphaned).
    pub fn in_flight(&self) -> impl Iterator<Item = OpHandle> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            matches!(slot.state, Lifecycle::Pending | Lifecycle::Orphaned)
                .then_some(OpHandle { index: index as u32, generation: slot.generation })
        })
    }

    /// References of every op still in flight in the kernel.
    pub fn in_flight_refs(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .filter(|slot| matches!(slot.state, Lifecycle::Pending | Lifecycle::Orphaned))
            .filter_map(|slot| slot.refs.as_ref())
    }

    /// References of every op whose waiter is still interested (for marking).
    pub fn waiting_refs(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| match slot.state {
            Lifecycle::Pending | Lifecycle::Completed { .. } | Lifecycle::Orphaned => slot.refs.as_ref(),
            Lifecycle::Free => None,
        })
    }

    /// Drop every slot, first handing each op still in flight to `leak`,
    /// which keeps (leaks) what the kernel may still use.
    pub fn clear_leaking(&mut self, mut leak: impl FnMut(&mut T)) {
        for slot in &mut self.slots {
            if matches!(slot.state, Lifecycle::Pending | Lifecycle::Orphaned) {
                if let Some(refs) = slot.refs.as_mut() {
                    leak(refs);
                }
            }
        }
        self.clear();
    }

    /// Drop every slot (after the kernel is done with all of them).
    pub fn clear(&mut self) {
        for index in 0..self.slots.len() {
            let generation = self.slots[index].generation;
            self.release(OpHandle { index: index as u32, generation });
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
        assert!(slots.complete(handle.user_data(), 5, 0));
        assert_eq!(slots.next_ready(), Some(&"fiber"));
        assert_eq!(slots.take_completed(handle), Some((5, 0, "fiber")));
        assert!(slots.is_empty());
        assert_eq!(slots.state(handle), Lifecycle::Free);
    }

    #[test]
    fn orphan_then_complete_frees_without_resuming() {
        let mut slots = Slots::default();
        let handle = slots.insert(7);
        slots.orphan(handle, |_| {});
        assert_eq!(slots.take_completed(handle), None);
        assert!(!slots.complete(handle.user_data(), -125, 0));
        assert!(slots.is_empty());
        assert_eq!(slots.next_ready(), None);
    }

    #[test]
    fn stale_generation_is_ignored() {
        let mut slots = Slots::default();
        let old = slots.insert(1);
        slots.complete(old.user_data(), 0, 0);
        slots.take_completed(old);
        let new = slots.insert(2);
        assert_eq!(old.index, new.index, "the index is reused");
        assert_ne!(old.generation, new.generation, "with a new generation");
        assert!(!slots.complete(old.user_data(), 0, 0), "nobody is resumed");
        assert_eq!(slots.state(new), Lifecycle::Pending);
    }

    #[test]
    fn sentinels_never_decode() {
        assert_eq!(OpHandle::decode(1 << 63), None);
        assert_eq!(OpHandle::decode(u64::MAX), None);
        let mut slots: Slots<u8> = Slots::default();
        assert!(!slots.complete(1 << 63 | 1, 0, 0));
    }

    #[test]
    fn free_list_reuse_bumps_generation_and_wraps_below_bit_63() {
        let mut slots = Slots::default();
        let mut handle = slots.insert(0u8);
        slots.slots[0].generation = GENERATION_MASK;
        handle.generation = GENERATION_MASK;
        assert!(OpHandle::decode(handle.user_data()).is_some());
        slots.complete(handle.user_data(), 0, 0);
        slots.take_completed(handle);
        let next = slots.insert(0);
        assert_eq!(next.generation, 1);
        assert!(OpHandle::decode(next.user_data()).is_some());
    }

    #[test]
    fn in_flight_lists_pending_and_orphaned() {
        let mut slots = Slots::default();
        let a = slots.insert(1);
        let b = slots.insert(2);
        let c = slots.insert(3);
        slots.orphan(b, |_| {});
        slots.complete(c.user_data(), 0, 0);
        let live: Vec<_> = slots.in_flight().collect();
        assert_eq!(live, vec![a, b]);
        slots.clear();
        assert!(slots.is_empty());
    }
}
