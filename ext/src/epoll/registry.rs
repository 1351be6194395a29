//! Who waits on which descriptor, and the epoll registration that adds up to.
//!
//! Several fibers may wait on one descriptor for different events; each has
//! a slot in `waiters.rs`. Per descriptor number we keep its waiters (oldest
//! first) and what we know of the kernel's entry for the file behind it.
//!
//! Registrations are level-triggered and kept while they are in use:
//! - Level-triggered, so a descriptor that is already ready when a fiber
//!   starts to wait is reported at the next `epoll_wait` (no lost wake-up),
//!   whether the entry is new or was kept from an earlier wait.
//! - Kept: when the last waiter of a descriptor is made ready, its entry
//!   stays until the loop is about to wait again (`reconcile`). A fiber that
//!   waits on the same IO again in the slice it was resumed for (a reader
//!   reading until `EAGAIN` and waiting, a ping-pong) finds it armed and costs
//!   no system call. At `reconcile`, entries are narrowed to what their
//!   waiters still want and deleted when nobody waits, so a level-triggered
//!   entry never reports to nobody (which would wake the loop for nothing).
//!
//! An entry names a file, not a number: it lives until the last reference to
//! the file is closed. If an IO is closed behind our back (`IO#close`, not
//! `io_close`) while a dup lives on (a forked child, another IO), its entry
//! stays in the set and can no longer be reached (`epoll_ctl` on the number
//! now names another file, or nothing), and a level-triggered stale entry
//! would report forever. So:
//! - `data` is `tag << 32 | fd`, the tag new for every entry we create; an
//!   event whose tag is not that of the number's current entry comes from an
//!   entry we cannot reach. Every entry we can reach reports the `data` we
//!   last gave it, and nothing changes the entries between an `epoll_wait`
//!   and the dispatch of its events, so this test has no false positives.
//! - Such an event marks the set `stale`; before the next wait the owner
//!   builds a fresh set and re-registers the live waiters (`rebuild`). A
//!   stale entry thus wakes the loop once, not forever; this only happens
//!   after a close behind our back while a dup keeps the file open.
//! - Skipping `epoll_ctl` for a new waiter requires proof that the number
//!   still names the file of the entry: the waiter waits through the same IO
//!   object (`anchor`) the entry was last confirmed through, and that object
//!   is open (the caller got a descriptor from it). The registry keeps the
//!   anchor alive (the owner marks it) while it holds it, so its address is
//!   never another object's. Any other waiter (another IO on the number, a
//!   raw descriptor) asks the kernel: MOD fails with ENOENT for a file that
//!   has no entry, ADD with EEXIST for one that has.
//!
//! The registry never talks to Ruby; the kernel is reached through the
//! `Interest` trait so the bookkeeping can be tested without an epoll set.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use super::by_number::ByNumber;
pub use super::waiters::WaiterId;
use super::waiters::{State, Waiters};
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

/// How a wait ended, as seen by the waiter when it takes its slot back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The descriptor became ready for these events (only bits asked for).
    Ready(i32),
    /// The waiter left before any event (an exception, or a resume by hand).
    Cancelled,
}

/// The kernel entry we created for the file behind a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u32,
    mask: u32,
}

struct Descriptor<A> {
    /// Waiters still waiting, oldest first.
    waiters: Vec<WaiterId>,
    /// Our entry for the file at this number, while we can reach it.
    entry: Option<Entry>,
    /// The object the entry was last confirmed through (see the module docs).
    anchor: Option<A>,
    /// Queued for `reconcile`.
    dirty: bool,
}

impl<A> Default for Descriptor<A> {
    fn default() -> Self {
        Descriptor { waiters: Vec::new(), entry: None, anchor: None, dirty: false }
    }
}

/// `T`: what a waiter keeps alive; `A`: the object a waiter waits through,
/// compared to tell whether a kept entry is still the right one.
pub struct Registry<T, A> {
    waiters: Waiters<T>,
    descriptors: ByNumber<Descriptor<A>>,
    /// Waiters made ready whose fibers the loop has not resumed yet, in order.
    ready: VecDeque<WaiterId>,
    /// Descriptors whose entry may be wider than their waiters need.
    dirty: Vec<RawFd>,
    /// An event came from an entry we cannot reach: rebuild the set.
    stale: bool,
    next_tag: u32,
}

impl<T, A> Default for Registry<T, A> {
    fn default() -> Self {
        Registry {
            waiters: Waiters::default(),
            descriptors: ByNumber::default(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            stale: false,
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

impl<T, A: Copy + PartialEq> Registry<T, A> {
    /// Register a waiter for `wanted` on `fd`, waiting through `anchor`
    /// (`None`: a raw descriptor), and make sure the kernel reports what it
    /// wants. On error nothing of this waiter is left behind.
    pub fn add(
        &mut self,
        fd: RawFd,
        wanted: i32,
        anchor: Option<A>,
        refs: T,
        kernel: &impl Interest,
    ) -> io::Result<WaiterId> {
        let id = self.waiters.insert(fd, wanted & WAITABLE, refs);
        let descriptor = self.descriptors.entry_or_default(fd);
        descriptor.waiters.push(id);
        let mask = events::to_poll(self.waiters.union(&descriptor.waiters));
        let confirmed = anchor.is_some() && descriptor.anchor == anchor;
        match descriptor.entry {
            Some(entry) if confirmed && entry.mask & mask == mask => {
                if entry.mask != mask {
                    mark_dirty(&mut self.dirty, fd, descriptor);
                }
                return Ok(id);
            }
            _ => {}
        }
        match arm(descriptor, &mut self.next_tag, fd, mask, kernel) {
            Ok(()) => {
                descriptor.anchor = anchor;
                Ok(id)
            }
            Err(error) => {
                descriptor.waiters.retain(|other| *other != id);
                self.waiters.release(id);
                // Whatever the others relied on is gone with it: they retry
                // their call and meet the error (or wait again) there.
                self.wake_all(fd);
                self.prune(fd);
                Err(error)
            }
        }
    }

    /// Record one epoll event (`data`, `revents`): every waiter on that
    /// descriptor that wants one of the ready events is moved to the ready
    /// list. Returns how many. Resumes nobody, calls nothing: the entry is
    /// brought in line by `reconcile`. An event from an entry we cannot
    /// reach any more marks the set stale.
    pub fn dispatch(&mut self, data: u64, revents: u32) -> usize {
        let (fd, tag) = decode(data);
        let descriptor = match self.descriptors.get_mut(&fd) {
            Some(descriptor) if descriptor.entry.is_some_and(|entry| entry.tag == tag) => descriptor,
            _ => {
                self.stale = true;
                return 0;
            }
        };
        let waiters = &mut self.waiters;
        let ready = &mut self.ready;
        let failed = revents & FAILED != 0;
        let mut woken = 0;
        descriptor.waiters.retain(|id| {
            let Some(waiter) = waiters.get_mut(*id) else {
                return false;
            };
            let events = events::from_poll(revents, waiter.wanted);
            if events == 0 && !failed {
                return true;
            }
            waiter.state = State::Ready(events);
            ready.push_back(*id);
            woken += 1;
            false
        });
        mark_dirty(&mut self.dirty, fd, descriptor);
        woken
    }

    /// Before the loop waits: narrow every entry whose waiters left or were
    /// made ready to what the remaining waiters want, and delete the entries
    /// nobody waits on. A number that no longer names our file (closed behind
    /// our back) loses its entry; its waiters wake and retry.
    pub fn reconcile(&mut self, kernel: &impl Interest) {
        // Popped one by one: the list keeps its capacity (no allocation per wait).
        while let Some(fd) = self.dirty.pop() {
            let Some(descriptor) = self.descriptors.get_mut(&fd) else {
                continue;
            };
            descriptor.dirty = false;
            let Some(entry) = descriptor.entry else {
                self.prune(fd);
                continue;
            };
            if descriptor.waiters.is_empty() {
                // An error means the file is gone from this number; if its
                // entry lives on, its next event marks the set stale.
                let _ = kernel.ctl(Op::Delete, fd, 0, 0);
                self.descriptors.remove(&fd);
                continue;
            }
            let mask = events::to_poll(self.waiters.union(&descriptor.waiters));
            if mask == entry.mask {
                continue;
            }
            if kernel.ctl(Op::Modify, fd, mask, encode(fd, entry.tag)).is_ok() {
                descriptor.entry = Some(Entry { mask, ..entry });
            } else {
                descriptor.entry = None;
                descriptor.anchor = None;
                self.wake_all(fd);
                self.prune(fd);
            }
        }
    }

    /// True when an event came from an entry we cannot reach: the owner
    /// should make a new epoll set and `rebuild` into it.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Register every descriptor that has waiters in a fresh, empty epoll
    /// set (new tags), and forget the rest. Waiters whose registration fails
    /// wake and retry.
    pub fn rebuild(&mut self, kernel: &impl Interest) {
        self.stale = false;
        self.dirty.clear();
        let fds: Vec<RawFd> = self.descriptors.keys().collect();
        for fd in fds {
            let Some(descriptor) = self.descriptors.get_mut(&fd) else {
                continue;
            };
            *descriptor = Descriptor { waiters: std::mem::take(&mut descriptor.waiters), ..Descriptor::default() };
            if descriptor.waiters.is_empty() {
                self.descriptors.remove(&fd);
                continue;
            }
            let mask = events::to_poll(self.waiters.union(&descriptor.waiters));
            if arm(descriptor, &mut self.next_tag, fd, mask, kernel).is_err() {
                self.wake_all(fd);
                self.prune(fd);
            }
        }
    }

    /// `fd` is about to be closed: delete its entry (while the number still
    /// names the file) and wake its waiters, which would otherwise wait
    /// forever; they retry their call and meet the closed descriptor there.
    /// Returns how many waiters were woken.
    pub fn forget(&mut self, fd: RawFd, kernel: &impl Interest) -> usize {
        let woken = self.wake_all(fd);
        if let Some(descriptor) = self.descriptors.remove(&fd) {
            if descriptor.entry.is_some() {
                let _ = kernel.ctl(Op::Delete, fd, 0, 0);
            }
        }
        woken
    }

    /// The epoll set is gone: nothing is registered any more. Waiters stay
    /// (and stay marked) until they leave.
    pub fn detach(&mut self) {
        self.stale = false;
        self.dirty.clear();
        self.descriptors.retain(|descriptor| {
            *descriptor = Descriptor { waiters: std::mem::take(&mut descriptor.waiters), ..Descriptor::default() };
            !descriptor.waiters.is_empty()
        });
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
            if matches!(self.waiters.get(id), Some(waiter) if matches!(waiter.state, State::Ready(_))) {
                return self.waiters.refs(id).map(|refs| (id, refs));
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
    /// descriptor, whose entry `reconcile` then narrows. `None` for an id
    /// that is not live.
    pub fn take(&mut self, id: WaiterId) -> Option<(Outcome, T)> {
        let waiter = self.waiters.get(id)?;
        let (fd, state) = (waiter.fd, waiter.state);
        let outcome = match state {
            State::Ready(events) => Outcome::Ready(events),
            State::Waiting => {
                if let Some(descriptor) = self.descriptors.get_mut(&fd) {
                    descriptor.waiters.retain(|other| *other != id);
                    mark_dirty(&mut self.dirty, fd, descriptor);
                }
                Outcome::Cancelled
            }
        };
        self.waiters.release(id).map(|refs| (outcome, refs))
    }

    /// Every live waiter's refs, to change.
    pub fn refs_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.waiters.all_refs_mut()
    }

    /// Every live waiter's refs (for marking).
    pub fn refs(&self) -> impl Iterator<Item = &T> {
        self.waiters.all_refs()
    }

    /// Every anchor the registry holds (for marking).
    pub fn anchors(&self) -> impl Iterator<Item = &A> {
        self.descriptors.values().filter_map(|descriptor| descriptor.anchor.as_ref())
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Make every waiter of `fd` ready with what it wanted. Returns how many.
    fn wake_all(&mut self, fd: RawFd) -> usize {
        let Some(descriptor) = self.descriptors.get_mut(&fd) else {
            return 0;
        };
        let woken = std::mem::take(&mut descriptor.waiters);
        for id in &woken {
            if let Some(waiter) = self.waiters.get_mut(*id) {
                waiter.state = State::Ready(waiter.wanted);
                self.ready.push_back(*id);
            }
        }
        woken.len()
    }

    /// Drop the record of a descriptor with no waiters and no entry.
    fn prune(&mut self, fd: RawFd) {
        if self
            .descriptors
            .get(&fd)
            .is_some_and(|descriptor| descriptor.waiters.is_empty() && descriptor.entry.is_none())
        {
            self.descriptors.remove(&fd);
        }
    }
}

fn mark_dirty<A>(dirty: &mut Vec<RawFd>, fd: RawFd, descriptor: &mut Descriptor<A>) {
    if !descriptor.dirty {
        descriptor.dirty = true;
        dirty.push(fd);
    }
}

/// Ask the kernel to report `mask` for the file now at `fd`. With an entry
/// we believe in, MOD it (ENOENT: that file is gone from the number, so ADD
/// a new entry under a new tag); without one, ADD (EEXIST: the file has an
/// entry we lost track of, so MOD it to the new tag). On error the
/// descriptor has no entry.
fn arm<A>(
    descriptor: &mut Descriptor<A>,
    next_tag: &mut u32,
    fd: RawFd,
    mask: u32,
    kernel: &impl Interest,
) -> io::Result<()> {
    let mut new_tag = || {
        *next_tag = next_tag.wrapping_add(1);
        *next_tag
    };
    let errno = |result: &io::Result<()>, errno: i32| matches!(result, Err(e) if e.raw_os_error() == Some(errno));
    let (tag, result) = match descriptor.entry {
        Some(entry) => {
            let result = kernel.ctl(Op::Modify, fd, mask, encode(fd, entry.tag));
            if errno(&result, libc::ENOENT) {
                let tag = new_tag();
                (tag, kernel.ctl(Op::Add, fd, mask, encode(fd, tag)))
            } else {
                (entry.tag, result)
            }
        }
        None => {
            let tag = new_tag();
            let result = kernel.ctl(Op::Add, fd, mask, encode(fd, tag));
            if errno(&result, libc::EEXIST) {
                (tag, kernel.ctl(Op::Modify, fd, mask, encode(fd, tag)))
            } else {
                (tag, result)
            }
        }
    };
    descriptor.entry = result.is_ok().then_some(Entry { tag, mask });
    if result.is_err() {
        descriptor.anchor = None;
    }
    result
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
