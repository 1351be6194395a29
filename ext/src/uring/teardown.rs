//! Giving a ring up: what `close` and `Drop` share.
//!
//! The kernel may still use memory and descriptors of every op in flight, so
//! how a ring is given up depends on who gives it up:
//! - **the owner thread** (the ring's only issuer): cancel everything in
//!   flight and the wake-up read, then submit, wait and reap until the kernel
//!   has completed all of it, and only then free the slots and the ring;
//! - **another thread** (a `close` or a GC run there): it may not enter the
//!   ring (SINGLE_ISSUER refuses with EEXIST), so it closes the ring's
//!   descriptor, which makes the kernel cancel what is left on its own time,
//!   and leaks what the kernel may still write: the pins of lent memory
//!   (`ruby/pins.rs`) and the wake-up read's target;
//! - **a forked child**: the ring is the parent's; forget it (see
//!   `Ring::forget_in_child`). The child's copies of the slots' memory are
//!   never written by the kernel, so they are simply freed.
//!
//! If the owner's drain does not finish within its deadline (an op the
//! kernel cannot cancel), the rest is given up as another thread would.

use std::time::{Duration, Instant};

use magnus::Ruby;

use super::ring::{Ring, USER_DATA_WAKEUP};
use super::slots::Slots;
use super::{Payload, SlotRefs};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Giver {
    Owner,
    OtherThread,
    ForkedChild,
}

/// How long the owner waits for cancelled ops before giving the rest up.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

pub fn teardown(ring: Ring, slots: &mut Slots<SlotRefs>, giver: Giver) {
    match giver {
        Giver::ForkedChild => {
            ring.forget_in_child();
            slots.clear();
        }
        Giver::Owner => {
            let mut ring = ring;
            if drain_all(&mut ring, slots) {
                drop(ring);
                slots.clear();
            } else {
                abandon(ring, slots);
            }
        }
        Giver::OtherThread => {
            if slots.in_flight().next().is_none() && !ring.is_wake_armed() {
                drop(ring);
                slots.clear();
            } else {
                abandon(ring, slots);
            }
        }
    }
}

/// Cancel every op and the wake-up read, and reap until none is left.
/// False if the deadline passed (or the ring failed) first.
fn drain_all(ring: &mut Ring, slots: &mut Slots<SlotRefs>) -> bool {
    let in_flight: Vec<u64> = slots.in_flight().map(|handle| handle.user_data()).collect();
    for user_data in in_flight {
        let _ = ring.cancel(user_data);
    }
    if ring.is_wake_armed() {
        let _ = ring.cancel(USER_DATA_WAKEUP);
    }
    let deadline = Instant::now() + DRAIN_DEADLINE;
    while slots.in_flight().next().is_some() || ring.is_wake_armed() {
        if Instant::now() >= deadline {
            return false;
        }
        // EEXIST (not the ring's issuer after all: a reused thread id, M:N
        // threads), EBADF and the like will not go away: give up at once
        // rather than spin until the deadline (inside the GC, maybe).
        if ring.submit().is_err_and(|e| is_lasting(&e)) {
            return false;
        }
        if ring.wait(Some(Duration::from_millis(50))).is_err_and(|e| is_lasting(&e)) {
            return false;
        }
        if ring
            .reap(|user_data, result| {
                slots.complete(user_data, result);
            })
            .is_err()
        {
            return false;
        }
    }
    true
}

fn is_lasting(error: &std::io::Error) -> bool {
    !matches!(error.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME))
}

/// Close the ring without waiting for the kernel, leaking whatever it may
/// still write: the pins of ops in flight and the wake-up read's target.
fn abandon(ring: Ring, slots: &mut Slots<SlotRefs>) {
    slots.clear_leaking(|refs| {
        if refs.pin.is_some() {
            // Its waiter may still be resumed (by the owner thread) and give
            // the buffer back: it must stay locked whatever happens.
            if let Some(buffer) = refs.buffer {
                // SAFETY: we hold the GVL (`close`, or the GC running `Drop`);
                // the buffer is pinned, so alive, for good.
                crate::ruby::buffer::keep_lent_forever(unsafe { Ruby::get_unchecked() }.get_inner(buffer));
            }
        }
        // Once submitted, the kernel holds its own reference to a pidfd's
        // file, so the number is ours to give back.
        if let Some(Payload::PidFd(pidfd)) = refs.payload.take() {
            drop(pidfd);
        }
        std::mem::forget(refs.pin.take());
    });
    ring.close_leaking_wake_target();
}
