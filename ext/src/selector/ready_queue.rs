//! The ready queue: fibers to run at the next `select`, in FIFO order.
//!
//! Entries are numbered in push order, and a `Token` is that number: an
//! entry's position is its number minus the front's, so a fiber that queued
//! itself (`resume`, `raise`) removes its own entry in O(1) on every exit
//! path, whether or not the loop already ran it. Removal leaves an empty
//! position, which pops skip (and which leaves at once when it is the
//! front). Numbers never repeat, so a token names nothing once its entry
//! has left the queue.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(u64);

/// Where a flush stops: positions numbered from here on were pushed after
/// it began.
#[derive(Clone, Copy)]
pub struct Limit(u64);

pub struct ReadyQueue<T> {
    /// Oldest first; `None` where an entry was removed.
    positions: VecDeque<Option<T>>,
    /// The number of `positions[0]`.
    front: u64,
    /// How many positions hold an entry.
    live: usize,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        ReadyQueue { positions: VecDeque::new(), front: 0, live: 0 }
    }
}

impl<T> ReadyQueue<T> {
    pub fn push(&mut self, value: T) -> Token {
        let token = Token(self.front + self.positions.len() as u64);
        self.positions.push_back(Some(value));
        self.live += 1;
        token
    }

    /// Remove the entry `token` names, if it is still queued.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let index = usize::try_from(token.0.checked_sub(self.front)?).ok()?;
        let value = self.positions.get_mut(index)?.take()?;
        self.live -= 1;
        while let Some(None) = self.positions.front() {
            self.positions.pop_front();
            self.front += 1;
        }
        Some(value)
    }

    /// Where a flush starting now stops: entries pushed after this call
    /// wait for the next flush.
    pub fn flush_limit(&self) -> Limit {
        Limit(self.front + self.positions.len() as u64)
    }

    /// Pop the oldest entry pushed before `limit`, skipping removed ones.
    pub fn pop_before(&mut self, limit: Limit) -> Option<T> {
        while self.front < limit.0 {
            let position = self.positions.pop_front()?;
            self.front += 1;
            if let Some(value) = position {
                self.live -= 1;
                return Some(value);
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.positions.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut ReadyQueue<u32>) -> Vec<u32> {
        let limit = queue.flush_limit();
        std::iter::from_fn(|| queue.pop_before(limit)).collect()
    }

    #[test]
    fn fifo_order() {
        let mut queue = ReadyQueue::default();
        for i in 0..5 {
            queue.push(i);
        }
        assert_eq!(queue.len(), 5);
        assert_eq!(drain(&mut queue), vec![0, 1, 2, 3, 4]);
        assert!(queue.is_empty());
    }

    #[test]
    fn removed_entries_are_skipped() {
        let mut queue = ReadyQueue::default();
        let a = queue.push(1);
        let b = queue.push(2);
        queue.push(3);
        assert_eq!(queue.remove(b), Some(2));
        assert_eq!(queue.remove(b), None, "a second remove is a no-op");
        assert_eq!(queue.remove(a), Some(1));
        assert_eq!(queue.values().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(drain(&mut queue), vec![3]);
    }

    #[test]
    fn pushes_during_a_flush_wait_for_the_next() {
        let mut queue = ReadyQueue::default();
        queue.push(1);
        let second = queue.push(2);
        let limit = queue.flush_limit();
        assert_eq!(queue.pop_before(limit), Some(1));
        queue.push(3);
        assert_eq!(queue.pop_before(limit), Some(2));
        assert_eq!(queue.pop_before(limit), None);
        assert_eq!(queue.remove(second), None, "already run");
        // Removing the front during a flush does not stretch it.
        let fourth = queue.push(4);
        let limit = queue.flush_limit();
        assert_eq!(queue.pop_before(limit), Some(3));
        queue.push(5);
        assert_eq!(queue.remove(fourth), Some(4));
        assert_eq!(queue.pop_before(limit), None);
        assert_eq!(drain(&mut queue), vec![5]);
    }

    #[test]
    fn a_token_never_names_a_later_entry() {
        let mut queue = ReadyQueue::default();
        let old = queue.push(1);
        assert_eq!(drain(&mut queue), vec![1]);
        let new = queue.push(2);
        assert_ne!(old, new);
        assert_eq!(queue.remove(old), None);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.remove(new), Some(2));
        assert!(queue.is_empty());
    }

    #[test]
    fn queued_and_removed_at_once_leaves_nothing_behind() {
        let mut queue: ReadyQueue<u32> = ReadyQueue::default();
        for i in 0..1000 {
            let token = queue.push(i);
            assert_eq!(queue.remove(token), Some(i));
        }
        assert!(queue.positions.is_empty());
    }
}
