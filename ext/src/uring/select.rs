//! `select` in two phases: reap completions into their slots (recording only),
//! then resume the waiting fibers with no borrow held.

use std::time::Duration;

use magnus::{Error, Ruby, Value};

use super::ring::Ring;
use super::URing;
use crate::ruby::receiver::{call_with, This};
use crate::ruby::{error, fiber};
use crate::selector::ZERO;

impl URing {
    /// Resume the fibers of the ops that had completed when this began,
    /// oldest first. Those the resumed fibers complete meanwhile (an inline
    /// write reaps the read it made ready) wait for the next `select`: two
    /// fibers that keep answering each other must not hold the loop here.
    /// No borrow is held while a fiber runs; a fiber resumed by another
    /// route in the meantime has taken its result already and is skipped.
    #[inline(always)]
    fn resume_completed(&self, ruby: &Ruby) -> Result<usize, Error> {
        let budget = self.slots.borrow().ready_len();
        if budget == 0 {
            return Ok(0);
        }
        self.resume_completed_within(ruby, budget)
    }

    fn resume_completed_within(&self, ruby: &Ruby, mut budget: usize) -> Result<usize, Error> {
        let mut resumed = 0;
        while budget > 0 {
            let next = self.slots.borrow_mut().next_ready(&mut budget).and_then(|refs| refs.fiber);
            let Some(next) = next else { return Ok(resumed) };
            resumed += 1;
            fiber::transfer(ruby.get_inner(next), &[])?;
        }
        Ok(resumed)
    }

    fn block(&self, ruby: &Ruby, timeout: Option<Duration>) -> Result<(), Error> {
        let waited = self.core.blocking(ruby, timeout, |remaining| {
            // Borrowed only while blocked: never while Ruby serves an interrupt.
            let mut ring = self.ring.borrow_mut();
            let Some(ring) = ring.as_mut() else {
                return Some(Ok(()));
            };
            if let Err(error) = ring.arm_wakeup() {
                return Some(Err(error));
            }
            self.core.without_gvl(|| ring.wait(remaining))
        })?;
        waited.map(drop).map_err(|e| error::from_io(ruby, e, "io_uring_enter"))
    }
}

crate::define_select_entry!();

/// `select(0)` on the owner thread: with nothing to do, answered here
/// without any method glue (which costs more than the check itself);
/// otherwise by `select_now`, which checks neither the receiver nor the
/// thread again. Anything else goes through `select` (`raw_method!`).
/// Nothing here raises or panics but through those two (borrows are
/// tried: a conflict is "something to do").
///
/// # Safety
/// Called from `select_method` only, with its arguments.
#[inline(never)]
unsafe extern "C" fn select_zero(rb_self: Value, duration: Value) -> Value {
    if let Some(this) = This::<URing>::exact(rb_self) {
        if this.core.is_owner_here() {
            if this.has_nothing_to_collect() {
                this.core.reset_idle();
                // SAFETY: 0 is an immediate Integer.
                return unsafe { magnus::rb_sys::FromRawValue::from_raw(ZERO) };
            }
            // SAFETY: called by Ruby as the method, on its receiver.
            return unsafe { select_now(this) };
        }
    }
    // SAFETY: called by Ruby as the method.
    unsafe { select_full(rb_self, duration) }
}

/// `select(0)` with something to do, on the owner thread. Out of line, as
/// `select_full`, and a C function, so that `select_zero` reaches it by a
/// tail call (its frame is gone while fibers run).
///
/// # Safety
/// Called from `select_zero` only, with its checked receiver.
#[inline(never)]
unsafe extern "C" fn select_now(this: This<URing>) -> Value {
    // SAFETY: a method entry's callee; nothing here needs dropping.
    unsafe { call_with(this, |ruby, this| this.select_once(ruby).map(|(_, resumed)| resumed)) }
}

impl URing {
    /// What `select(0)` would find on the owner thread (the caller checks
    /// it, and so that this is not a forked child): no fiber ready, no
    /// completion to resume or collect, nothing to submit, an open ring.
    fn has_nothing_to_collect(&self) -> bool {
        self.core.try_is_ready() == Some(false)
            && self.slots.try_borrow().is_ok_and(|slots| !slots.has_ready())
            && self.ring.try_borrow_mut().is_ok_and(|mut ring| ring.as_mut().is_some_and(Ring::is_quiet))
    }

    /// Every `select`'s pass that does not wait, on the owner thread: submit
    /// what is queued, run the fibers that were ready, resume those whose
    /// ops had completed. Returns how many of each ran. Inlined into both
    /// callers: a call of its own costs a `select` more than it saves.
    #[inline(always)]
    fn select_once(&self, ruby: &Ruby) -> Result<(usize, usize), Error> {
        self.core.reset_idle();
        // Queued SQEs name descriptors by number: submit them before any
        // fiber runs and can close (and reuse) one.
        if self.with_ring(ruby, |ring| ring.has_queued())? {
            self.submit_now(ruby)?;
        }
        let ran = self.core.flush_ready(ruby)?;
        self.reap(ruby)?;
        Ok((ran, self.resume_completed(ruby)?))
    }
}

pub fn select(ruby: &Ruby, rb_self: This<URing>, duration: Value) -> Result<usize, Error> {
    let timeout = crate::selector::duration(ruby, duration)?;
    rb_self.core.check_owner(ruby)?;
    let (ran, mut handled) = rb_self.select_once(ruby)?;
    if ran == 0 && handled == 0 && !rb_self.core.is_ready() && timeout != Some(Duration::ZERO) {
        rb_self.block(ruby, timeout)?;
        rb_self.reap(ruby)?;
        handled = rb_self.resume_completed(ruby)?;
    }
    Ok(handled)
}
