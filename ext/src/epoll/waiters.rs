//! The waiters' slots: one per parked fiber, named by index and generation
//! (as in `ready_queue.rs`), so the waiting fiber's stack only holds a `Copy`
//! id and a stale id can never reach a reused slot.

use std::os::fd::RawFd;

/// A waiter's slot, named by index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterId {
    index: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Free,
    Waiting,
    /// Made ready with these events; the loop has yet to resume it, or it
    /// has yet to take its slot back.
    Ready(i32),
}

pub struct Waiter<T> {
    generation: u32,
    pub state: State,
    pub fd: RawFd,
    pub wanted: i32,
    refs: Option<T>,
}

pub struct Waiters<T> {
    slots: Vec<Waiter<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters { slots: Vec::new(), free: Vec::new(), live: 0 }
    }
}

impl<T> Waiters<T> {
    /// A new waiting slot for `wanted` on `fd`.
    pub fn insert(&mut self, fd: RawFd, wanted: i32, refs: T) -> WaiterId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Waiter { generation: 0, state: State::Free, fd: -1, wanted: 0, refs: None });
            (self.slots.len() - 1) as u32
        });
        let waiter = &mut self.slots[index as usize];
        *waiter = Waiter { generation: waiter.generation, state: State::Waiting, fd, wanted, refs: Some(refs) };
        self.live += 1;
        WaiterId { index, generation: waiter.generation }
    }

    /// The live waiter `id` names, if any.
    pub fn get(&self, id: WaiterId) -> Option<&Waiter<T>> {
        self.slots
            .get(id.index as usize)
            .filter(|waiter| waiter.generation == id.generation && waiter.state != State::Free)
    }

    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut Waiter<T>> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|waiter| waiter.generation == id.generation && waiter.state != State::Free)
    }

    pub fn refs(&self, id: WaiterId) -> Option<&T> {
        self.get(id)?.refs.as_ref()
    }

    /// Free the slot (its id goes stale) and hand its refs back.
    pub fn release(&mut self, id: WaiterId) -> Option<T> {
        let waiter = self.get_mut(id)?;
        waiter.state = State::Free;
        waiter.generation = waiter.generation.wrapping_add(1);
        waiter.fd = -1;
        let refs = waiter.refs.take();
        self.free.push(id.index);
        self.live -= 1;
        refs
    }

    /// The union of what the waiters `ids` want.
    pub fn union(&self, ids: &[WaiterId]) -> i32 {
        ids.iter().filter_map(|id| self.get(*id)).fold(0, |acc, waiter| acc | waiter.wanted)
    }

    /// Every live waiter's refs (for marking).
    pub fn all_refs_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter(|waiter| waiter.state != State::Free).filter_map(|waiter| waiter.refs.as_mut())
    }

    pub fn all_refs(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter(|waiter| waiter.state != State::Free).filter_map(|waiter| waiter.refs.as_ref())
    }

    pub fn len(&self) -> usize {
        self.live
    }

    #[cfg(test)]
    pub fn index(id: WaiterId) -> (u32, u32) {
        (id.index, id.generation)
    }
}
