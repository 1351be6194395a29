//! `select` in two phases: reap completions into their slots (recording only),
//! then resume the waiting fibers with no borrow held. Also the shutdown that
//! `close` and `Drop` share.

use crate::ruby::receiver::This;
use std::time::Duration;

use magnus::{rb_sys::AsRawValue, Error, Ruby, Value};

use super::ring::Ring;
use super::URing;
use crate::ruby::{error, fiber, nogvl};

impl URing {
    /// Run `f` on the open ring; `IOError` when the selector is closed (or
    /// this is a forked child, which must never touch the parent's ring).
    pub(super) fn with_ring<R>(&self, ruby: &Ruby, f: impl FnOnce(&mut Ring) -> R) -> Result<R, Error> {
        if self.core.is_forked() {
            return Err(error::io_error(ruby, "selector is closed (forked child)"));
        }
        let Ok(mut ring) = self.ring.try_borrow_mut() else {
            return Err(super::in_use(ruby));
        };
        match ring.as_mut() {
            Some(ring) => Ok(f(ring)),
            None => Err(error::io_error(ruby, "selector is closed")),
        }
    }

    /// Move every available completion into its slot. Enters the kernel only
    /// when `Ring::needs_enter` says so (nothing to submit and no deferred
    /// task work flagged: no system call).
    pub(super) fn reap(&self, ruby: &Ruby) -> Result<usize, Error> {
        let slots = &self.slots;
        let result = self.with_ring(ruby, |ring| -> std::io::Result<usize> {
            if ring.needs_enter() {
                match ring.submit() {
                    Ok(()) => {}
                    // What is left in the SQ goes with the next enter.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut slots = slots.borrow_mut();
            let mut queued = 0;
            ring.reap(|user_data, result, flags| {
                if slots.complete(user_data, result, flags) {
                    queued += 1;
                }
            })?;
            Ok(queued)
        })?;
        result.map_err(|e| error::from_io(ruby, e, "io_uring_enter"))
    }

    /// Push an SQE, reaping into slots when the kernel pushes back (EBUSY).
    ///
    /// # Safety
    /// As `Ring::push`: the entry's pointers stay valid until its completion.
    pub(super) unsafe fn push_sqe(&self, ruby: &Ruby, entry: &io_uring::squeue::Entry) -> Result<(), Error> {
        for _ in 0..1024 {
            // SAFETY: forwarded from the caller's contract.
            let pushed = self.with_ring(ruby, |ring| unsafe { ring.push(entry) })?;
            match pushed {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                    self.reap(ruby)?;
                }
                Err(e) => return Err(error::from_io(ruby, e, "io_uring_enter")),
            }
        }
        Err(error::syserr(ruby, libc::EBUSY, "io_uring submission queue stays full"))
    }

    /// Submit now (for ops that must be live when the call returns).
    pub(super) fn submit_now(&self, ruby: &Ruby) -> Result<(), Error> {
        for _ in 0..1024 {
            match self.with_ring(ruby, |ring| ring.submit())? {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                    self.reap(ruby)?;
                }
                Err(e) => return Err(error::from_io(ruby, e, "io_uring_enter")),
            }
        }
        Err(error::syserr(ruby, libc::EBUSY, "io_uring submission queue stays full"))
    }

    /// Resume the fibers of completed ops, oldest first. No borrow is held
    /// while a fiber runs; a fiber resumed by another route in the meantime
    /// has taken its result already and is skipped.
    fn resume_completed(&self, ruby: &Ruby) -> Result<usize, Error> {
        let mut resumed = 0;
        loop {
            let next = self.slots.borrow_mut().next_ready().and_then(|refs| refs.fiber);
            let Some(next) = next else { return Ok(resumed) };
            resumed += 1;
            fiber::transfer(ruby.get_inner(next), &[])?;
        }
    }

    fn block(&self, ruby: &Ruby, timeout: Option<Duration>) -> Result<(), Error> {
        let wake_fd = self.core.interrupt().fd();
        let waited = self.core.blocking(ruby, timeout, |remaining| {
            // Borrowed only while blocked: never while Ruby serves an interrupt.
            let mut ring = self.ring.borrow_mut();
            let Some(ring) = ring.as_mut() else {
                return Some(Ok(()));
            };
            if let Err(error) = ring.arm_wakeup() {
                return Some(Err(error));
            }
            nogvl::without_gvl(wake_fd, || ring.wait(remaining))
        })?;
        waited.map(drop).map_err(|e| error::from_io(ruby, e, "io_uring_enter"))
    }
}

/// `select`'s entry point. `select(0)` with nothing to do, the call an
/// event loop makes on every turn, is answered here without magnus's glue
/// (which costs more than the check itself); everything else goes through
/// `select`. Nothing here can raise or panic.
///
/// # Safety
/// Called by Ruby as the `select` method.
pub unsafe extern "C" fn select_method(rb_self: Value, duration: Value) -> Value {
    let full = magnus::method!(select, 1);
    if is_zero(duration) {
        if let Some(this) = This::<URing>::exact(rb_self) {
            if this.has_nothing_to_collect() {
                this.core.reset_idle();
                // SAFETY: 0 is an immediate Integer.
                return unsafe { magnus::rb_sys::FromRawValue::from_raw(ZERO) };
            }
        }
    }
    // SAFETY: the full method, as magnus wraps it.
    unsafe { full(rb_self, duration) }
}

/// `INT2FIX(0)`.
const ZERO: rb_sys::VALUE = 1;

/// An Integer 0 or a Float 0.0 (flonum).
fn is_zero(duration: Value) -> bool {
    const FLONUM_ZERO: rb_sys::VALUE = 0x8000_0000_0000_0002;
    matches!(duration.as_raw(), ZERO | FLONUM_ZERO)
}

impl URing {
    /// What `select(0)` would find: no fiber ready, no completion to resume
    /// or collect, nothing to submit, on the owner thread of an open ring.
    fn has_nothing_to_collect(&self) -> bool {
        self.core.is_owner_here()
            && !self.core.is_ready()
            && self.slots.try_borrow().is_ok_and(|slots| !slots.has_ready())
            && self.ring.try_borrow_mut().is_ok_and(|mut ring| ring.as_mut().is_some_and(Ring::is_quiet))
    }
}

pub fn select(ruby: &Ruby, rb_self: This<URing>, duration: Value) -> Result<usize, Error> {
    let timeout = crate::selector::duration(ruby, duration)?;
    rb_self.core.check_owner(ruby)?;
    rb_self.core.reset_idle();
    // Queued SQEs name descriptors by number: submit them before any fiber
    // runs and can close (and reuse) one.
    if rb_self.with_ring(ruby, |ring| ring.has_queued())? {
        rb_self.submit_now(ruby)?;
    }
    let ran = rb_self.core.flush_ready(ruby)?;
    rb_self.reap(ruby)?;
    let mut handled = rb_self.resume_completed(ruby)?;
    if ran == 0 && handled == 0 && !rb_self.core.is_ready() && timeout != Some(Duration::ZERO) {
        rb_self.block(ruby, timeout)?;
        rb_self.reap(ruby)?;
        handled = rb_self.resume_completed(ruby)?;
    }
    Ok(handled)
}
