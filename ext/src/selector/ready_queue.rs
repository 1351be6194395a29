//! The ready queue: fibers to run at the next `select`, in FIFO order.
//!
//! Entries live in a `Slab`, so that a fiber that queued itself (`resume`,
//! `raise`) removes its own entry in O(1) on every exit path, whether or not
//! the loop already ran it; removal leaves a stale key in `order`, which the
//! flush skips.

use std::collections::VecDeque;

use super::slab::{Key, Slab};

pub type Token = Key;

pub struct ReadyQueue<T> {
    order: VecDeque<Key>,
    entries: Slab<T>,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        ReadyQueue { order: VecDeque::new(), entries: Slab::default() }
    }
}

impl<T> ReadyQueue<T> {
    pub fn push(&mut self, value: T) -> Token {
        let token = self.entries.insert(value);
        self.order.push_back(token);
        token
    }

    /// Remove the entry `token` names, if it is still queued.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.entries.remove(token)
    }

    /// How many queue positions a flush starting now may visit: entries pushed
    /// after this call wait for the next flush.
    pub fn flush_budget(&self) -> usize {
        self.order.len()
    }

    /// Pop the oldest position while `budget` lasts, returning its value if the
    /// entry is still live (removed entries leave a stale position behind).
    pub fn pop_within(&mut self, budget: &mut usize) -> Option<T> {
        while *budget > 0 {
            *budget -= 1;
            let token = self.order.pop_front()?;
            if let Some(value) = self.entries.remove(token) {
                return Some(value);
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut ReadyQueue<u32>) -> Vec<u32> {
        let mut budget = queue.flush_budget();
        std::iter::from_fn(|| queue.pop_within(&mut budget)).collect()
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
        queue.push(2);
        assert_eq!(queue.remove(a), Some(1));
        assert_eq!(queue.remove(a), None, "a second remove is a no-op");
        assert_eq!(drain(&mut queue), vec![2]);
    }

    #[test]
    fn pushes_during_a_flush_wait_for_the_next() {
        let mut queue = ReadyQueue::default();
        queue.push(1);
        queue.push(2);
        let mut budget = queue.flush_budget();
        assert_eq!(queue.pop_within(&mut budget), Some(1));
        queue.push(3);
        assert_eq!(queue.pop_within(&mut budget), Some(2));
        assert_eq!(queue.pop_within(&mut budget), None);
        assert_eq!(drain(&mut queue), vec![3]);
    }

    #[test]
    fn stale_token_does_not_remove_reused_entry() {
        let mut queue = ReadyQueue::default();
        let old = queue.push(1);
        assert_eq!(drain(&mut queue), vec![1]);
        let new = queue.push(2);
        assert_eq!(queue.remove(old), None);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.remove(new), Some(2));
    }
}
