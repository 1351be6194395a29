//! Who waits on which descriptor, and the epoll registration that adds up to.
//!
//! Several fibers may wait on one descriptor for different events. Each
//! waiter gets a slot addressed by a `WaiterId` (index + generation, as in
//! `ready_queue.rs`), so the waiting fiber's stack only holds a `Copy` id and
//! a stale id can never reach a reused slot. Per descriptor we keep the ids of
//! its waiters (oldest first) and what is registered in the kernel.
//!
//! Registrations are level-triggered and one-shot (`EPOLLONESHOT`):
//! - Level-triggered, so arming a descriptor that is already ready reports it
//!   at once (no lost wake-up for data that arrived before the wait).
//! - One-shot, because a registration can outlive our knowledge of it: epoll
//!   keys an entry on (descriptor number, open file), and the entry goes away
//!   only when the last reference to the file is closed. If an IO is closed
//!   while a dup of it lives on (another IO, a forked child), its entry stays
//!   in the set and cannot be named any more (`EPOLL_CTL_DEL` on the number
//!   now reaches the new file). A level-triggered stale entry would report
//!   forever and spin the loop; a one-shot one reports at most once, and the
//!   tag in its `data` (below) tells us to ignore that report.
//!   After delivering an event the kernel disarms the entry but keeps it, so
//!   the next wait on that descriptor costs a single `EPOLL_CTL_MOD`.
//!
//! `data` of every registration is `tag << 32 | fd`. The tag changes whenever
//! we create a new kernel entry for a descriptor number, so an event from an
//! earlier entry for the same number (a previous file) is recognised as stale.
//!
//! Whether a descriptor number still names the file we registered is only
//! known to the kernel, so every change goes through `epoll_ctl` (MOD fails
//! with ENOENT for a new file, ADD with EEXIST for a known one). The one
//! shortcut, skipping the call when the entry is already armed for what a
//! new waiter wants, is taken only when one of the current waiters waits on
//! the same IO object (`identity`): their IOs are alive (marked), so that IO
//! cannot have been closed and its number reused underneath.
//!
//! The registry never talks to Ruby; the kernel is reached through the
//! `Interest` trait so the bookkeeping can be tested without an epoll set.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;

use crate::selector::events;

/// `data` of the wake-up eventfd's registration. No registration of a
/// descriptor can have it: descriptor numbers never reach `u32::MAX`.
pub const WAKEUP_DATA: u64 = u64::MAX;

/// epoll's event bits are poll's bits (EPOLLIN == POLLIN, and so on), which
/// is what `events::to_poll` / `events::from_poll` speak.
const _: () = {
    assert!(libc::EPOLLIN == libc::POLLIN as i32);
    assert!(libc::EPOLLPRI == libc::POLLPRI as i32);
    assert!(libc::EPOLLOUT == libc::POLLOUT as i32);
    assert!(libc::EPOLLERR == libc::POLLERR as i32);
    assert!(libc::EPOLLHUP == libc::POLLHUP as i32);
};

const FAILED: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
const WAITABLE: i32 = events::READABLE | events::PRIORITY | events::WRITABLE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Modify,
    Delete,
}

/// The kernel side: `epoll_ctl` on the selector's epoll set.
pub trait Interest {
    fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()>;
}

/// A waiter's slot, named by index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterId {
    index: u32,
    generation: u32,
}

/// How a wait ended, as seen by the waiter when it takes its slot back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The descriptor became ready for these events (only bits asked for).
    Ready(i32),
    /// The waiter left before any event (an exception, or a resume by hand).
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Ready(i32),
}

struct Waiter<T> {
    generation: u32,
    state: State,
    fd: RawFd,
    wanted: i32,
    /// Which object the waiter waits through (an IO's address), 0 for none.
    identity: u64,
    refs: Option<T>,
}

#[derive(Default)]
struct Descriptor {
    /// Waiters still waiting, oldest first.
    waiters: Vec<WaiterId>,
    /// True while we believe the kernel holds an entry we created for this
    /// number (armed or disarmed by a delivered one-shot event).
    registered: bool,
    /// The mask currently armed in the kernel; 0 when disarmed or absent.
    armed: u32,
    /// The tag in the current entry's `data`.
    tag: u32,
}

pub struct Registry<T> {
    waiters: Vec<Waiter<T>>,
    free: Vec<u32>,
    live: usize,
    descriptors: HashMap<RawFd, Descriptor>,
    /// Waiters made ready whose fibers the loop has not resumed yet, in order.
    ready: VecDeque<WaiterId>,
    next_tag: u32,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            waiters: Vec::new(),
            free: Vec::new(),
            live: 0,
            descriptors: HashMap::new(),
            ready: VecDeque::new(),
            next_tag: 0,
        }
    }
}

/// The `data` of a registration of `fd` with `tag`.
pub fn encode(fd: RawFd, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(fd as u32)
}

fn decode(data: u64) -> (RawFd, u32) {
    (data as u32 as RawFd, (data >> 32) as u32)
}

fn union_of<T>(waiters: &[Waiter<T>], ids: &[WaiterId]) -> i32 {
    ids.iter().fold(0, |acc, id| acc | waiters[id.index as usize].wanted)
}

impl<T> Registry<T> {
    /// Register a waiter for `wanted` on `fd` (through the object `identity`,
    /// 0 for none), arming the kernel for the union of what every waiter on
    /// `fd` wants. On error nothing is left behind.
    pub fn add(
        &mut self,
        fd: RawFd,
        wanted: i32,
        identity: u64,
        refs: T,
        kernel: &impl Interest,
    ) -> io::Result<WaiterId> {
        let id = self.insert(fd, wanted & WAITABLE, identity, refs);
        let waiters = &self.waiters;
        let descriptor = self.descriptors.entry(fd).or_default();
        let known =
            identity != 0 && descriptor.waiters.iter().any(|other| waiters[other.index as usize].identity == identity);
        if !known {
            // Maybe a new file under a reused number: let the kernel say.
            descriptor.armed = 0;
        }
        descriptor.waiters.push(id);
        if let Err(error) = self.sync(fd, kernel) {
            self.unlink(fd, id);
            self.release(id);
            // Waiters already there lost their registration with ours.
            self.sync_or_wake(fd, kernel);
            self.prune(fd);
            return Err(error);
        }
        Ok(id)
    }

    /// Record one epoll event (`data`, `revents`): every waiter on that
    /// descriptor that wants one of the ready events is moved to the ready
    /// list; the others stay and the registration is re-armed for them.
    /// Events of stale registrations are ignored. Returns how many waiters
    /// were made ready. Resumes nobody.
    pub fn dispatch(&mut self, data: u64, revents: u32, kernel: &impl Interest) -> usize {
        let (fd, tag) = decode(data);
        let Some(descriptor) = self.descriptors.get_mut(&fd) else {
            return 0;
        };
        if !descriptor.registered || descriptor.tag != tag {
            return 0;
        }
        // One-shot: the kernel disarmed the entry when it reported it.
        descriptor.armed = 0;
        let waiters = &mut self.waiters;
        let ready = &mut self.ready;
        let failed = revents & FAILED != 0;
        let mut woken = 0;
        descriptor.waiters.retain(|id| {
            let waiter = &mut waiters[id.index as usize];
            let events = events::from_poll(revents, waiter.wanted);
            if events != 0 || failed {
                waiter.state = State::Ready(events);
                ready.push_back(*id);
                woken += 1;
                false
            } else {
                true
            }
        });
        woken + self.sync_or_wake(fd, kernel)
    }

    /// The next ready waiter whose fiber the loop should resume, oldest first,
    /// visiting at most `budget` list positions (start with `ready_len()`, so
    /// waiters made ready meanwhile wait for the next round). The waiter stays
    /// ready until it takes its slot back (`take`); a waiter that already left
    /// by another route is skipped.
    pub fn next_ready(&mut self, budget: &mut usize) -> Option<(WaiterId, &T)> {
        while *budget > 0 {
            *budget -= 1;
            let id = self.ready.pop_front()?;
            if matches!(self.state(id), State::Ready(_)) {
                let refs = self.waiters[id.index as usize].refs.as_ref();
                if let Some(refs) = refs {
                    return Some((id, refs));
                }
            }
        }
        None
    }

    /// How many positions the ready list has now (an upper bound on the
    /// waiters to resume: some may have left already).
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The waiter's side, on every return route: free the slot and hand its
    /// refs back. A waiter that was still waiting is unlinked from its
    /// descriptor and the registration narrowed (or deleted) to match the
    /// waiters that remain. `None` for an id that is not live.
    pub fn take(&mut self, id: WaiterId, kernel: &impl Interest) -> Option<(Outcome, T)> {
        let waiter = self.waiter(id)?;
        let fd = waiter.fd;
        match waiter.state {
            State::Ready(events) => {
                let refs = self.release(id)?;
                Some((Outcome::Ready(events), refs))
            }
            State::Waiting => {
                self.unlink(fd, id);
                let refs = self.release(id)?;
                self.sync_or_wake(fd, kernel);
                self.prune(fd);
                Some((Outcome::Cancelled, refs))
            }
            State::Free => None,
        }
    }

    /// `fd` is about to be closed: delete its registration (while the number
    /// still names the file) and wake its waiters, which would otherwise wait
    /// forever; they retry their call and meet the closed descriptor there.
    /// Returns how many waiters were woken.
    pub fn forget(&mut self, fd: RawFd, kernel: &impl Interest) -> usize {
        let Some(descriptor) = self.descriptors.remove(&fd) else {
            return 0;
        };
        if descriptor.registered {
            let _ = kernel.ctl(Op::Delete, fd, 0, 0);
        }
        for id in &descriptor.waiters {
            let waiter = &mut self.waiters[id.index as usize];
            waiter.state = State::Ready(waiter.wanted);
            self.ready.push_back(*id);
        }
        descriptor.waiters.len()
    }

    /// The epoll set is gone: nothing is registered any more. Waiters stay
    /// (and stay marked) until they leave.
    pub fn detach(&mut self) {
        for descriptor in self.descriptors.values_mut() {
            descriptor.registered = false;
            descriptor.armed = 0;
        }
        self.descriptors.retain(|_, descriptor| !descriptor.waiters.is_empty());
    }

    /// Every live waiter's refs, to change.
    pub fn refs_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.waiters.iter_mut().filter(|waiter| waiter.state != State::Free).filter_map(|waiter| waiter.refs.as_mut())
    }

    /// Every live waiter's refs (for marking).
    pub fn refs(&self) -> impl Iterator<Item = &T> {
        self.waiters.iter().filter(|waiter| waiter.state != State::Free).filter_map(|waiter| waiter.refs.as_ref())
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn insert(&mut self, fd: RawFd, wanted: i32, identity: u64, refs: T) -> WaiterId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.waiters.push(Waiter {
                    generation: 0,
                    state: State::Free,
                    fd: -1,
                    wanted: 0,
                    identity: 0,
                    refs: None,
                });
                (self.waiters.len() - 1) as u32
            }
        };
        let waiter = &mut self.waiters[index as usize];
        waiter.state = State::Waiting;
        waiter.fd = fd;
        waiter.wanted = wanted;
        waiter.identity = identity;
        waiter.refs = Some(refs);
        self.live += 1;
        WaiterId { index, generation: waiter.generation }
    }

    fn waiter(&self, id: WaiterId) -> Option<&Waiter<T>> {
        self.waiters
            .get(id.index as usize)
            .filter(|waiter| waiter.generation == id.generation && waiter.state != State::Free)
    }

    fn state(&self, id: WaiterId) -> State {
        self.waiter(id).map_or(State::Free, |waiter| waiter.state)
    }

    fn release(&mut self, id: WaiterId) -> Option<T> {
        self.waiter(id)?;
        let waiter = &mut self.waiters[id.index as usize];
        waiter.state = State::Free;
        waiter.generation = waiter.generation.wrapping_add(1);
        waiter.fd = -1;
        self.free.push(id.index);
        self.live -= 1;
        waiter.refs.take()
    }

    fn unlink(&mut self, fd: RawFd, id: WaiterId) {
        if let Some(descriptor) = self.descriptors.get_mut(&fd) {
            descriptor.waiters.retain(|other| *other != id);
        }
    }

    /// Drop the record of a descriptor that has no waiters and nothing in
    /// the kernel: there is nothing left to remember about it.
    fn prune(&mut self, fd: RawFd) {
        if let Some(descriptor) = self.descriptors.get(&fd) {
            if descriptor.waiters.is_empty() && !descriptor.registered {
                self.descriptors.remove(&fd);
            }
        }
    }

    /// Bring the kernel in line with the waiters of `fd`: arm the union of
    /// their events, or delete an armed entry nobody waits on any more.
    fn sync(&mut self, fd: RawFd, kernel: &impl Interest) -> io::Result<()> {
        let next_tag = &mut self.next_tag;
        let mut new_tag = || {
            *next_tag = next_tag.wrapping_add(1);
            *next_tag
        };
        let Some(descriptor) = self.descriptors.get_mut(&fd) else {
            return Ok(());
        };
        if descriptor.waiters.is_empty() {
            if descriptor.armed != 0 {
                // Errors are fine: a closed descriptor has no entry left to delete.
                let _ = kernel.ctl(Op::Delete, fd, 0, 0);
                descriptor.registered = false;
                descriptor.armed = 0;
            }
            return Ok(());
        }
        let mask = events::to_poll(union_of(&self.waiters, &descriptor.waiters)) | ONESHOT;
        if descriptor.armed == mask {
            return Ok(());
        }
        let result = if descriptor.registered {
            match kernel.ctl(Op::Modify, fd, mask, encode(fd, descriptor.tag)) {
                // Our entry went with its file (closed; the number may be reused).
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                    descriptor.tag = new_tag();
                    kernel.ctl(Op::Add, fd, mask, encode(fd, descriptor.tag))
                }
                other => other,
            }
        } else {
            descriptor.tag = new_tag();
            let data = encode(fd, descriptor.tag);
            match kernel.ctl(Op::Add, fd, mask, data) {
                // This file is already in the set under this number (we lost
                // track of it, e.g. after `forget` failed to delete it).
                Err(error) if error.raw_os_error() == Some(libc::EEXIST) => kernel.ctl(Op::Modify, fd, mask, data),
                other => other,
            }
        };
        match result {
            Ok(()) => {
                descriptor.registered = true;
                descriptor.armed = mask;
                Ok(())
            }
            Err(error) => {
                descriptor.registered = false;
                descriptor.armed = 0;
                Err(error)
            }
        }
    }

    /// `sync`, and when the kernel refuses, wake the remaining waiters of
    /// `fd` rather than leave them parked with nothing armed: they retry
    /// their call and meet the error there. Returns how many were woken.
    fn sync_or_wake(&mut self, fd: RawFd, kernel: &impl Interest) -> usize {
        if self.sync(fd, kernel).is_ok() {
            return 0;
        }
        let Some(descriptor) = self.descriptors.get_mut(&fd) else {
            return 0;
        };
        let woken = std::mem::take(&mut descriptor.waiters);
        for id in &woken {
            let waiter = &mut self.waiters[id.index as usize];
            waiter.state = State::Ready(waiter.wanted);
            self.ready.push_back(*id);
        }
        woken.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::selector::events::{READABLE, WRITABLE};

    const IN: u32 = libc::EPOLLIN as u32;
    const OUT: u32 = libc::EPOLLOUT as u32;
    const HUP: u32 = libc::EPOLLHUP as u32;
    /// The identity of "the" IO object in tests that use one.
    const IO: u64 = 0x1000;

    /// A fake epoll set: remembers entries and can be told to fail.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<(Op, RawFd, u32)>>,
        entries: RefCell<HashMap<RawFd, (u32, u64)>>,
        fail_with: RefCell<Option<i32>>,
    }

    impl Fake {
        fn calls(&self) -> Vec<(Op, RawFd, u32)> {
            std::mem::take(&mut *self.calls.borrow_mut())
        }

        fn data(&self, fd: RawFd) -> u64 {
            self.entries.borrow()[&fd].1
        }

        fn mask(&self, fd: RawFd) -> u32 {
            self.entries.borrow()[&fd].0
        }

        /// As if the file behind `fd` was closed (its entry goes with it).
        fn close(&self, fd: RawFd) {
            self.entries.borrow_mut().remove(&fd);
        }
    }

    impl Interest for Fake {
        fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
            self.calls.borrow_mut().push((op, fd, mask));
            if let Some(errno) = *self.fail_with.borrow() {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let mut entries = self.entries.borrow_mut();
            let exists = entries.contains_key(&fd);
            match op {
                Op::Add if exists => Err(io::Error::from_raw_os_error(libc::EEXIST)),
                Op::Modify | Op::Delete if !exists => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                Op::Add | Op::Modify => {
                    entries.insert(fd, (mask, data));
                    Ok(())
                }
                Op::Delete => {
                    entries.remove(&fd);
                    Ok(())
                }
            }
        }
    }

    fn mask(events: i32) -> u32 {
        events::to_poll(events) | ONESHOT
    }

    fn next<T>(registry: &mut Registry<T>) -> Option<(WaiterId, &T)> {
        let mut budget = usize::MAX;
        registry.next_ready(&mut budget)
    }

    #[test]
    fn registration_is_the_union_of_the_waiters() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        registry.add(5, READABLE, IO, "reader", &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))]);
        registry.add(5, WRITABLE, IO, "writer", &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE | WRITABLE))]);
        registry.add(5, READABLE, IO, "second reader", &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![], "already armed for that");
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn another_io_on_an_armed_number_asks_the_kernel_again() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        registry.add(5, READABLE, IO, 2, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))], "same IO: already armed");

        // A second IO object on the same number may be a new file: MOD is
        // how we find out (it succeeds for the same file).
        registry.add(5, READABLE, IO + 8, 3, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);

        // And when the number now names a new file, MOD fails and we ADD a
        // fresh entry with a new tag.
        let old = kernel.data(5);
        kernel.close(5);
        registry.add(5, READABLE, IO + 16, 4, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE)), (Op::Add, 5, mask(READABLE))]);
        assert_ne!(kernel.data(5), old);
        assert_eq!(registry.dispatch(old, IN, &kernel), 0, "the old entry is stale");
        assert_eq!(registry.dispatch(kernel.data(5), IN, &kernel), 4);
    }

    #[test]
    fn an_event_wakes_only_the_waiters_that_want_it_and_rearms_for_the_rest() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let reader = registry.add(5, READABLE, IO, "reader", &kernel).unwrap();
        let writer = registry.add(5, WRITABLE, IO, "writer", &kernel).unwrap();
        kernel.calls();

        assert_eq!(registry.dispatch(kernel.data(5), OUT, &kernel), 1);
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);
        assert_eq!(next(&mut registry), Some((writer, &"writer")));
        assert_eq!(next(&mut registry), None);
        assert_eq!(registry.take(writer, &kernel), Some((Outcome::Ready(WRITABLE), "writer")));

        assert_eq!(registry.dispatch(kernel.data(5), IN | OUT, &kernel), 1);
        assert_eq!(kernel.calls(), vec![], "disarmed entry left in place");
        assert_eq!(registry.take(reader, &kernel), Some((Outcome::Ready(READABLE), "reader")));
        assert!(registry.is_empty());

        registry.add(5, READABLE, IO, "again", &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))], "re-arming a disarmed entry is one MOD");
    }

    #[test]
    fn hangup_wakes_every_waiter() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let reader = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
        assert_eq!(registry.dispatch(kernel.data(5), HUP, &kernel), 2);
        assert_eq!(registry.take(reader, &kernel), Some((Outcome::Ready(READABLE), 1)));
        assert_eq!(registry.take(writer, &kernel), Some((Outcome::Ready(WRITABLE), 2)));
    }

    #[test]
    fn a_cancelled_waiter_narrows_or_deletes_the_registration() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let reader = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
        kernel.calls();

        assert_eq!(registry.take(writer, &kernel), Some((Outcome::Cancelled, 2)));
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);
        assert_eq!(kernel.mask(5), mask(READABLE));

        assert_eq!(registry.take(reader, &kernel), Some((Outcome::Cancelled, 1)));
        assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
        assert!(registry.is_empty());
        assert_eq!(registry.take(reader, &kernel), None, "a second take is a no-op");

        registry.add(5, READABLE, IO, 3, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))]);
    }

    #[test]
    fn a_waiter_that_left_is_never_resumed() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let first = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        let second = registry.add(5, READABLE, IO, 2, &kernel).unwrap();
        assert_eq!(registry.dispatch(kernel.data(5), IN, &kernel), 2);
        // The first leaves (say, raised into) before the loop resumes it.
        assert_eq!(registry.take(first, &kernel), Some((Outcome::Ready(READABLE), 1)));
        // Its slot is reused at once by a new waiter.
        let third = registry.add(6, READABLE, IO, 3, &kernel).unwrap();
        assert_eq!(third.index, first.index);
        assert_ne!(third.generation, first.generation);
        assert_eq!(next(&mut registry), Some((second, &2)));
        assert_eq!(next(&mut registry), None, "the stale entry is skipped");
        assert_eq!(registry.take(first, &kernel), None);
    }

    #[test]
    fn stale_and_unknown_events_are_ignored() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        let old = kernel.data(5);

        // The file behind 5 is closed and 5 reused: the waiter re-registers.
        registry.take(waiter, &kernel);
        kernel.calls();
        registry.add(5, READABLE, IO, 2, &kernel).unwrap();
        let new = kernel.data(5);
        assert_ne!(old, new, "a new entry gets a new tag");

        assert_eq!(registry.dispatch(old, IN, &kernel), 0);
        assert_eq!(registry.dispatch(encode(7, 1), IN, &kernel), 0);
        assert_eq!(registry.dispatch(WAKEUP_DATA, IN, &kernel), 0);
        assert_eq!(registry.dispatch(new, IN, &kernel), 1);
    }

    #[test]
    fn a_reused_descriptor_number_is_added_again() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        registry.dispatch(kernel.data(5), IN, &kernel);
        registry.take(waiter, &kernel);
        let old = kernel.data(5);
        kernel.close(5);
        kernel.calls();

        registry.add(5, READABLE, IO, 2, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE)), (Op::Add, 5, mask(READABLE))]);
        assert_ne!(kernel.data(5), old);
    }

    #[test]
    fn an_entry_we_lost_track_of_is_modified() {
        let kernel = Fake::default();
        kernel.entries.borrow_mut().insert(5, (mask(WRITABLE), encode(5, 99)));
        let mut registry = Registry::default();
        registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE)), (Op::Modify, 5, mask(READABLE))]);
        assert_eq!(registry.dispatch(kernel.data(5), IN, &kernel), 1);
    }

    #[test]
    fn a_refused_add_leaves_nothing_behind() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        *kernel.fail_with.borrow_mut() = Some(libc::EPERM);
        let error = registry.add(5, READABLE, IO, 1, &kernel).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
        assert!(registry.is_empty());
        assert_eq!(registry.refs().count(), 0);
        assert!(registry.descriptors.is_empty());
    }

    #[test]
    fn a_refused_rearm_wakes_the_remaining_waiters() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
        *kernel.fail_with.borrow_mut() = Some(libc::EBADF);
        assert_eq!(registry.dispatch(kernel.data(5), IN, &kernel), 2);
        assert_eq!(registry.take(writer, &kernel), Some((Outcome::Ready(WRITABLE), 2)));
    }

    #[test]
    fn forget_deletes_and_wakes_waiters() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        kernel.calls();
        assert_eq!(registry.forget(5, &kernel), 1);
        assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
        assert_eq!(next(&mut registry), Some((waiter, &1)));
        assert_eq!(registry.take(waiter, &kernel), Some((Outcome::Ready(READABLE), 1)));
        assert_eq!(kernel.calls(), vec![]);
        assert_eq!(registry.forget(5, &kernel), 0);
    }

    #[test]
    fn refs_lists_live_waiters() {
        let kernel = Fake::default();
        let mut registry = Registry::default();
        let a = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
        registry.add(6, READABLE, IO, 2, &kernel).unwrap();
        registry.dispatch(kernel.data(5), IN, &kernel);
        let mut refs: Vec<_> = registry.refs().copied().collect();
        refs.sort();
        assert_eq!(refs, vec![1, 2], "ready waiters are still marked");
        registry.take(a, &kernel);
        assert_eq!(registry.refs().copied().collect::<Vec<_>>(), vec![2]);
        registry.detach();
        assert_eq!(registry.len(), 1);
    }

    /// The same rules against a real epoll set and a pipe.
    #[test]
    fn with_a_real_epoll_set() {
        struct Epoll(RawFd);
        impl Interest for Epoll {
            fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
                super::super::poller::ctl(self.0, op, fd, mask, data)
            }
        }
        let epoll = super::super::poller::create().unwrap();
        let kernel = Epoll(std::os::fd::AsRawFd::as_raw_fd(&epoll));
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [input, output] = fds;
        let wait = |registry: &mut Registry<i32>| {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
            let count = super::super::poller::wait(kernel.0, &mut events, 0).unwrap();
            events[..count]
                .iter()
                .map(|event| {
                    let (data, revents) = (event.u64, event.events);
                    registry.dispatch(data, revents, &kernel)
                })
                .sum::<usize>()
        };

        let mut registry = Registry::default();
        let reader = registry.add(input, READABLE, IO, 1, &kernel).unwrap();
        let writer = registry.add(output, WRITABLE, IO, 2, &kernel).unwrap();
        assert_eq!(wait(&mut registry), 1, "the pipe is writable, not readable");
        assert_eq!(registry.take(writer, &kernel).unwrap().0, Outcome::Ready(WRITABLE));
        assert_eq!(wait(&mut registry), 0, "one-shot: reported once");

        // SAFETY: writes one byte from a static buffer.
        assert_eq!(unsafe { libc::write(output, b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait(&mut registry), 1);
        assert_eq!(registry.take(reader, &kernel).unwrap().0, Outcome::Ready(READABLE));

        // Still readable: a new wait is reported at once (level-triggered).
        let again = registry.add(input, READABLE, IO, 3, &kernel).unwrap();
        assert_eq!(wait(&mut registry), 1);
        registry.take(again, &kernel);

        // Cancelled: the entry is deleted, the readiness is not reported.
        let cancelled = registry.add(input, READABLE, IO, 4, &kernel).unwrap();
        assert_eq!(registry.take(cancelled, &kernel).unwrap().0, Outcome::Cancelled);
        assert_eq!(wait(&mut registry), 0);

        // SAFETY: closes the two descriptors this test opened.
        unsafe {
            libc::close(input);
            libc::close(output);
        }
    }

    /// A file closed while a dup keeps it (and its one-shot entry) alive, its
    /// number reused for a new file: the stale entry reports at most once,
    /// is ignored, and the new file is registered under a new tag.
    #[test]
    fn a_stale_entry_of_a_closed_number_is_ignored() {
        struct Epoll(RawFd);
        impl Interest for Epoll {
            fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
                super::super::poller::ctl(self.0, op, fd, mask, data)
            }
        }
        let epoll = super::super::poller::create().unwrap();
        let kernel = Epoll(std::os::fd::AsRawFd::as_raw_fd(&epoll));
        let pipe = || {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            fds
        };
        let wait = |registry: &mut Registry<i32>| {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
            let count = super::super::poller::wait(kernel.0, &mut events, 0).unwrap();
            events[..count]
                .iter()
                .map(|event| {
                    let (data, revents) = (event.u64, event.events);
                    registry.dispatch(data, revents, &kernel)
                })
                .sum::<usize>()
        };
        let [old_input, old_output] = pipe();
        let [new_input, new_output] = pipe();
        // SAFETY: duplicates a descriptor this test owns.
        let keep = unsafe { libc::dup(old_input) };
        assert!(keep >= 0);

        let mut registry = Registry::default();
        registry.add(old_input, READABLE, IO, 1, &kernel).unwrap();
        // Replace the file behind the number (as a close and a reuse would).
        // SAFETY: both descriptors are this test's.
        assert_eq!(unsafe { libc::dup2(new_input, old_input) }, old_input);
        let second = registry.add(old_input, READABLE, IO + 8, 2, &kernel).unwrap();

        // SAFETY: writes one byte from a static buffer.
        assert_eq!(unsafe { libc::write(old_output, b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait(&mut registry), 0, "the old file's entry is stale");
        assert_eq!(wait(&mut registry), 0, "and one-shot: no second report");

        // SAFETY: writes one byte from a static buffer.
        assert_eq!(unsafe { libc::write(new_output, b"y".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait(&mut registry), 2, "both waiters on the number wake");
        assert_eq!(registry.take(second, &kernel).unwrap().0, Outcome::Ready(READABLE));

        // SAFETY: closes the descriptors this test opened.
        unsafe {
            for fd in [old_input, old_output, new_input, new_output, keep] {
                libc::close(fd);
            }
        }
    }
}
