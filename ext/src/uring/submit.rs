//! The URing's ring plumbing shared by `select` and the ops: borrowing the
//! open ring, submitting, pushing SQEs, and reaping completions into slots.

use magnus::{Error, Ruby};

use super::ring::{Ring, INLINE_TAG};
use super::URing;
use crate::ruby::error;

impl URing {
    /// Run `f` on the open ring; `IOError` when the selector is closed (or
    /// this is a forked child, which must never touch the parent's ring).
    #[inline(always)]
    pub(super) fn with_ring<R>(&self, ruby: &Ruby, f: impl FnOnce(&mut Ring) -> R) -> Result<R, Error> {
        if self.core.is_forked() {
            return Err(error::selector_closed(ruby, true));
        }
        let Ok(mut ring) = self.ring.try_borrow_mut() else {
            return Err(super::in_use(ruby));
        };
        match ring.as_mut() {
            Some(ring) => Ok(f(ring)),
            None => Err(error::selector_closed(ruby, false)),
        }
    }

    /// Move every available completion into its slot. Enters the kernel only
    /// when `Ring::needs_enter` says so (nothing to submit and no deferred
    /// task work flagged: no system call).
    pub(super) fn reap(&self, ruby: &Ruby) -> Result<usize, Error> {
        let slots = &self.slots;
        let inline = &self.inline;
        let result = self.with_ring(ruby, |ring| -> std::io::Result<usize> {
            if ring.needs_enter() {
                match ring.submit() {
                    Ok(()) => {}
                    // What is left in the SQ goes with the next enter.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {}
                    Err(e) => return Err(e),
                }
            } else if ring.has_no_completions() {
                // The common case of a `select` that found fibers ready.
                return Ok(0);
            }
            let mut slots = slots.borrow_mut();
            let mut queued = 0;
            ring.reap(|user_data, result| {
                if user_data & INLINE_TAG == INLINE_TAG {
                    inline.set(inline.get().completed(user_data, result));
                } else if slots.complete(user_data, result) {
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
}
