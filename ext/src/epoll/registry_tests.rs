//! Unit tests of the registry: against a fake epoll set that records calls,
//! and against real epoll sets and pipes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;

use super::super::poller;
use super::super::waiters::Waiters;
use super::*;
use crate::selector::events::{READABLE, WRITABLE};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
/// "The" IO object of tests that use one, and a second one.
const IO: Option<u64> = Some(0x1000);
const OTHER_IO: Option<u64> = Some(0x2000);

type Reg<T> = Registry<T, u64>;

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

    fn mask(&self, fd: RawFd) -> Option<u32> {
        self.entries.borrow().get(&fd).map(|entry| entry.0)
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
    events::to_poll(events)
}

fn next<T>(registry: &mut Reg<T>) -> Option<(WaiterId, &T)> {
    let mut budget = usize::MAX;
    registry.next_ready(&mut budget)
}

#[test]
fn registration_is_the_union_of_the_waiters() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    registry.add(5, READABLE, IO, "reader", &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))]);
    registry.add(5, WRITABLE, IO, "writer", &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE | WRITABLE))]);
    registry.add(5, READABLE, IO, "second reader", &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![], "already armed for that");
    assert_eq!(registry.len(), 3);
}

#[test]
fn a_fiber_that_waits_again_through_the_same_io_costs_no_system_call() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let mut waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    kernel.calls();
    for round in 0..3 {
        assert_eq!(registry.dispatch(kernel.data(5), IN), 1);
        assert_eq!(registry.take(waiter).unwrap().0, Outcome::Ready(READABLE), "round {round}");
        waiter = registry.add(5, READABLE, IO, 2, &kernel).unwrap();
        registry.reconcile(&kernel);
    }
    assert_eq!(kernel.calls(), vec![], "kept, level-triggered: nothing to re-arm");
}

#[test]
fn an_entry_nobody_waits_on_is_deleted_before_the_next_wait() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    registry.dispatch(kernel.data(5), IN);
    registry.take(waiter);
    kernel.calls();
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
    assert!(registry.descriptors.is_empty());
    assert_eq!(registry.anchors().count(), 0, "the anchor is let go");
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![]);
}

#[test]
fn another_io_on_an_armed_number_asks_the_kernel_again() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    registry.add(5, READABLE, IO, 2, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))], "same IO: already armed");

    // A second IO object on the same number may be a new file: MOD is how
    // we find out (it succeeds for the same file).
    registry.add(5, READABLE, OTHER_IO, 3, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);

    // A raw descriptor (no IO) always asks.
    registry.add(5, READABLE, None, 4, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);

    // When the number now names a new file, MOD fails and we ADD a fresh
    // entry with a new tag; the old entry's events are stale.
    let old = kernel.data(5);
    kernel.close(5);
    registry.add(5, READABLE, Some(0x3000), 5, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE)), (Op::Add, 5, mask(READABLE))]);
    assert_ne!(kernel.data(5), old);
    assert_eq!(registry.dispatch(old, IN), 0, "the old entry is stale");
    assert!(registry.is_stale());
    assert_eq!(registry.dispatch(kernel.data(5), IN), 5);
}

#[test]
fn an_event_wakes_only_the_waiters_that_want_it_and_the_rest_keep_the_entry() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let reader = registry.add(5, READABLE, IO, "reader", &kernel).unwrap();
    let writer = registry.add(5, WRITABLE, IO, "writer", &kernel).unwrap();
    kernel.calls();

    assert_eq!(registry.dispatch(kernel.data(5), OUT), 1);
    assert_eq!(kernel.calls(), vec![], "dispatch calls nothing");
    assert_eq!(next(&mut registry), Some((writer, &"writer")));
    assert_eq!(next(&mut registry), None);
    assert_eq!(registry.take(writer), Some((Outcome::Ready(WRITABLE), "writer")));
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))], "narrowed to the reader");

    assert_eq!(registry.dispatch(kernel.data(5), IN | OUT), 1);
    assert_eq!(registry.take(reader), Some((Outcome::Ready(READABLE), "reader")));
    assert!(registry.is_empty());
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
    assert_eq!(kernel.mask(5), None);

    registry.add(5, READABLE, IO, "again", &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))]);
}

#[test]
fn a_wider_entry_is_kept_for_a_new_waiter_and_narrowed_later() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let writer = registry.add(5, READABLE | WRITABLE, IO, 1, &kernel).unwrap();
    registry.dispatch(kernel.data(5), OUT);
    registry.take(writer);
    kernel.calls();
    registry.add(5, READABLE, IO, 2, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![], "the entry already covers it");
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);
}

#[test]
fn hangup_wakes_every_waiter() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let reader = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
    assert_eq!(registry.dispatch(kernel.data(5), HUP), 2);
    assert_eq!(registry.take(reader), Some((Outcome::Ready(READABLE), 1)));
    assert_eq!(registry.take(writer), Some((Outcome::Ready(WRITABLE), 2)));
}

#[test]
fn a_cancelled_waiter_narrows_or_deletes_the_registration_before_the_next_wait() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let reader = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
    kernel.calls();

    assert_eq!(registry.take(writer), Some((Outcome::Cancelled, 2)));
    assert_eq!(kernel.calls(), vec![]);
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Modify, 5, mask(READABLE))]);
    assert_eq!(kernel.mask(5), Some(mask(READABLE)));

    assert_eq!(registry.take(reader), Some((Outcome::Cancelled, 1)));
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
    assert!(registry.is_empty());
    assert_eq!(registry.take(reader), None, "a second take is a no-op");

    registry.add(5, READABLE, IO, 3, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE))]);
}

#[test]
fn a_waiter_that_left_is_never_resumed() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let first = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    let second = registry.add(5, READABLE, IO, 2, &kernel).unwrap();
    assert_eq!(registry.dispatch(kernel.data(5), IN), 2);
    // The first leaves (say, raised into) before the loop resumes it.
    assert_eq!(registry.take(first), Some((Outcome::Ready(READABLE), 1)));
    // Its slot is reused at once by a new waiter.
    let third = registry.add(6, READABLE, IO, 3, &kernel).unwrap();
    let (first_index, first_generation) = Waiters::<i32>::index(first);
    let (third_index, third_generation) = Waiters::<i32>::index(third);
    assert_eq!(third_index, first_index);
    assert_ne!(third_generation, first_generation);
    assert_eq!(next(&mut registry), Some((second, &2)));
    assert_eq!(next(&mut registry), None, "the stale entry is skipped");
    assert_eq!(registry.take(first), None);
}

#[test]
fn stale_and_unknown_events_mark_the_set_stale() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    assert_eq!(registry.dispatch(encode(5, 77), IN), 0, "not the current entry's tag");
    assert!(registry.is_stale());

    let mut registry = Reg::default();
    registry.add(5, READABLE, IO, 1, &Fake::default()).unwrap();
    assert_eq!(registry.dispatch(encode(7, 1), IN), 0, "a number we know nothing of");
    assert!(registry.is_stale());
}

#[test]
fn rebuild_registers_the_live_waiters_in_a_new_set() {
    let old = Fake::default();
    let mut registry = Reg::default();
    let reader = registry.add(5, READABLE, IO, 1, &old).unwrap();
    registry.add(6, WRITABLE, IO, 2, &old).unwrap();
    let left = registry.add(7, READABLE, IO, 3, &old).unwrap();
    registry.take(left);
    registry.dispatch(encode(9, 9), IN);
    assert!(registry.is_stale());

    let new = Fake::default();
    registry.rebuild(&new);
    assert!(!registry.is_stale());
    let mut calls = new.calls();
    calls.sort_by_key(|call| call.1);
    assert_eq!(calls, vec![(Op::Add, 5, mask(READABLE)), (Op::Add, 6, mask(WRITABLE))]);
    assert_eq!(registry.dispatch(new.data(5), IN), 1);
    assert_eq!(registry.take(reader), Some((Outcome::Ready(READABLE), 1)));
    assert!(!registry.descriptors.contains_key(&7));
    assert_eq!(registry.anchors().count(), 0, "the next wait through an IO confirms it again");
}

#[test]
fn an_entry_we_lost_track_of_is_modified() {
    let kernel = Fake::default();
    kernel.entries.borrow_mut().insert(5, (mask(WRITABLE), encode(5, 99)));
    let mut registry = Reg::default();
    registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    assert_eq!(kernel.calls(), vec![(Op::Add, 5, mask(READABLE)), (Op::Modify, 5, mask(READABLE))]);
    assert_eq!(registry.dispatch(kernel.data(5), IN), 1);
}

#[test]
fn a_refused_add_leaves_nothing_behind_and_wakes_the_others() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    *kernel.fail_with.borrow_mut() = Some(libc::EPERM);
    let error = registry.add(5, READABLE, IO, 1, &kernel).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    assert!(registry.is_empty());
    assert_eq!(registry.refs().count(), 0);
    assert!(registry.descriptors.is_empty());

    *kernel.fail_with.borrow_mut() = None;
    let reader = registry.add(5, READABLE, IO, 2, &kernel).unwrap();
    *kernel.fail_with.borrow_mut() = Some(libc::EBADF);
    assert!(registry.add(5, WRITABLE, OTHER_IO, 3, &kernel).is_err());
    assert_eq!(next(&mut registry), Some((reader, &2)));
    assert_eq!(registry.take(reader), Some((Outcome::Ready(READABLE), 2)));
}

#[test]
fn a_refused_narrowing_wakes_the_remaining_waiters() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let reader = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    let writer = registry.add(5, WRITABLE, IO, 2, &kernel).unwrap();
    registry.take(writer);
    kernel.close(5);
    registry.reconcile(&kernel);
    assert_eq!(next(&mut registry), Some((reader, &1)));
    assert_eq!(registry.take(reader), Some((Outcome::Ready(READABLE), 1)));
    assert!(registry.descriptors.is_empty());
}

#[test]
fn forget_deletes_and_wakes_waiters() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let waiter = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    kernel.calls();
    assert_eq!(registry.forget(5, &kernel), 1);
    assert_eq!(kernel.calls(), vec![(Op::Delete, 5, 0)]);
    assert_eq!(next(&mut registry), Some((waiter, &1)));
    assert_eq!(registry.take(waiter), Some((Outcome::Ready(READABLE), 1)));
    registry.reconcile(&kernel);
    assert_eq!(kernel.calls(), vec![]);
    assert_eq!(registry.forget(5, &kernel), 0);
}

#[test]
fn refs_lists_live_waiters() {
    let kernel = Fake::default();
    let mut registry = Reg::default();
    let a = registry.add(5, READABLE, IO, 1, &kernel).unwrap();
    registry.add(6, READABLE, IO, 2, &kernel).unwrap();
    registry.dispatch(kernel.data(5), IN);
    let mut refs: Vec<_> = registry.refs().copied().collect();
    refs.sort();
    assert_eq!(refs, vec![1, 2], "ready waiters are still marked");
    registry.take(a);
    assert_eq!(registry.refs().copied().collect::<Vec<_>>(), vec![2]);
    registry.detach();
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.anchors().count(), 0);
}

// --- against real epoll sets ------------------------------------------------

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> Epoll {
        Epoll(poller::create().unwrap())
    }

    /// Collect events without blocking, as `select` does: reconcile first.
    fn wait(&self, registry: &mut Reg<i32>) -> usize {
        registry.reconcile(self);
        let mut events = poller::Events::<8>::new();
        poller::wait(self.0.as_raw_fd(), &mut events, 0).unwrap();
        events.filled().iter().map(|event| registry.dispatch(event.u64, event.events)).sum()
    }
}

impl Interest for Epoll {
    fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
        poller::ctl(self.0.as_raw_fd(), op, fd, mask, data)
    }
}

use std::os::fd::{FromRawFd, OwnedFd};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn put(fd: &OwnedFd, byte: u8) {
    // SAFETY: writes one byte from a local.
    assert_eq!(unsafe { libc::write(fd.as_raw_fd(), [byte].as_ptr().cast(), 1) }, 1);
}

fn get(fd: &OwnedFd) -> isize {
    let mut byte = [0u8; 1];
    // SAFETY: reads at most one byte into a local.
    unsafe { libc::read(fd.as_raw_fd(), byte.as_mut_ptr().cast(), 1) }
}

#[test]
fn with_a_real_epoll_set() {
    let kernel = Epoll::new();
    let (input, output) = pipe();
    let mut registry = Reg::default();
    let reader = registry.add(input.as_raw_fd(), READABLE, IO, 1, &kernel).unwrap();
    let writer = registry.add(output.as_raw_fd(), WRITABLE, OTHER_IO, 2, &kernel).unwrap();
    assert_eq!(kernel.wait(&mut registry), 1, "the pipe is writable, not readable");
    assert_eq!(registry.take(writer).unwrap().0, Outcome::Ready(WRITABLE));
    assert_eq!(kernel.wait(&mut registry), 0, "nobody waits for writable any more");

    put(&output, b'x');
    assert_eq!(kernel.wait(&mut registry), 1);
    assert_eq!(registry.take(reader).unwrap().0, Outcome::Ready(READABLE));

    // Data that is there before the wait is reported, through a kept entry...
    let again = registry.add(input.as_raw_fd(), READABLE, IO, 3, &kernel).unwrap();
    assert_eq!(kernel.wait(&mut registry), 1);
    registry.take(again);
    // ...and through a deleted one.
    assert_eq!(kernel.wait(&mut registry), 0);
    let later = registry.add(input.as_raw_fd(), READABLE, IO, 4, &kernel).unwrap();
    assert_eq!(kernel.wait(&mut registry), 1);
    registry.take(later);

    // Cancelled: the entry is deleted, the readiness is not reported.
    let cancelled = registry.add(input.as_raw_fd(), READABLE, IO, 5, &kernel).unwrap();
    assert_eq!(registry.take(cancelled).unwrap().0, Outcome::Cancelled);
    assert_eq!(kernel.wait(&mut registry), 0);
    assert_eq!(get(&input), 1);
}

/// A file closed behind our back while a dup keeps it (and its entry)
/// alive, its number reused for a new file: the stale entry wakes the loop
/// once, the set is rebuilt, and the new file is served.
#[test]
fn a_stale_entry_of_a_closed_number_is_dropped_with_its_set() {
    let mut kernel = Epoll::new();
    let (old_input, old_output) = pipe();
    let (new_input, new_output) = pipe();
    // SAFETY: duplicates a descriptor this test owns.
    let keep = unsafe { libc::dup(old_input.as_raw_fd()) };
    assert!(keep >= 0);
    let fd = old_input.as_raw_fd();

    let mut registry = Reg::default();
    let first = registry.add(fd, READABLE, IO, 1, &kernel).unwrap();
    put(&old_output, b'x');
    assert_eq!(kernel.wait(&mut registry), 1);
    registry.take(first);
    // The fiber closes its IO (not through io_close) in the slice it was
    // resumed for, and the number is reused at once.
    // SAFETY: both descriptors are this test's; `old_input`'s number now names the new pipe.
    assert_eq!(unsafe { libc::dup2(new_input.as_raw_fd(), fd) }, fd);
    let second = registry.add(fd, READABLE, OTHER_IO, 2, &kernel).unwrap();

    // The old pipe is still readable and its entry out of reach.
    assert_eq!(kernel.wait(&mut registry), 0);
    assert!(registry.is_stale());
    kernel = Epoll::new();
    registry.rebuild(&kernel);
    assert_eq!(kernel.wait(&mut registry), 0, "the stale entry went with the old set");

    put(&new_output, b'y');
    assert_eq!(kernel.wait(&mut registry), 1);
    assert_eq!(registry.take(second).unwrap().0, Outcome::Ready(READABLE));

    // SAFETY: closes the dup this test made.
    unsafe { libc::close(keep) };
}

/// Same file under the same number, through two IO objects: the entry is
/// shared, both waiters wake.
#[test]
fn two_ios_on_one_file_share_the_entry() {
    let kernel = Epoll::new();
    let (input, output) = pipe();
    let mut registry = Reg::default();
    let a = registry.add(input.as_raw_fd(), READABLE, IO, 1, &kernel).unwrap();
    let b = registry.add(input.as_raw_fd(), READABLE, OTHER_IO, 2, &kernel).unwrap();
    put(&output, b'x');
    assert_eq!(kernel.wait(&mut registry), 2);
    assert!(!registry.is_stale());
    assert_eq!(registry.take(a).unwrap().0, Outcome::Ready(READABLE));
    assert_eq!(registry.take(b).unwrap().0, Outcome::Ready(READABLE));
}
