//! `io_read`, `io_write`, `io_pread` and `io_pwrite` through the ring, on top
//! of the shared transfer loop. An attempt that may not wait (a write's
//! first try, every `length == 0` call) completes inside the enter that
//! submits it; an attempt that waits parks the fiber on an op that lends the
//! caller's buffer to the kernel, so if the fiber leaves early the op is
//! cancelled and drained before the error propagates (`OnInterrupt::Drain`).

use io_uring::{opcode, squeue, types};
use magnus::{Error, Ruby};

use super::park::{OnInterrupt, Parked};
use super::poll;
use crate::ruby::buffer::BufferAccess;
use crate::ruby::pins::Pin;
use crate::selector::transfer_loop::{self, Call, Transfer};
use crate::uring::{SlotRefs, URing};

struct RingIo<'a> {
    ruby: &'a Ruby,
    selector: &'a URing,
}

impl transfer_loop::Attempts for RingIo<'_> {
    /// A write is tried at once first: a socket or pipe usually has room, and
    /// an attempt that cannot wait completes inside the enter that submits
    /// it, so the fiber need not switch away and back. Only a write that
    /// would block, and every read (whose data has usually not arrived yet),
    /// park on an op that the kernel completes when the descriptor is ready.
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if op.access == BufferAccess::Drain {
            let result = self.now(op, base, len, position)?;
            if !would_wait(result) {
                return Ok(result);
            }
        }
        self.park(op, base, len, position)
    }

    fn attempt_now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        let result = self.now(op, base, len, position)?;
        if result == -(libc::EOPNOTSUPP as isize) {
            // Some files (tmpfs, for one) refuse RWF_NOWAIT; a regular file
            // never waits for readiness anyway.
            return self.park(op, base, len, position);
        }
        Ok(result)
    }

    fn wait_ready(&self, op: &Transfer, events: i32) -> Result<(), Error> {
        poll::wait(self.ruby, self.selector, op.fiber, op.io, op.fd, events).map(drop)
    }
}

/// `-EAGAIN` (not ready) or `-EOPNOTSUPP` (RWF_NOWAIT refused): the attempt
/// must be made again as an op that may wait.
fn would_wait(result: isize) -> bool {
    result == -(libc::EAGAIN as isize) || result == -(libc::EOPNOTSUPP as isize)
}

impl RingIo<'_> {
    /// The read or write entry for `op`; on a pollable descriptor the kernel
    /// waits for readiness by itself unless `rw_flags` has RWF_NOWAIT.
    fn entry(
        op: &Transfer,
        base: *mut u8,
        len: usize,
        position: Option<u64>,
        rw_flags: i32,
    ) -> impl FnOnce(u64) -> squeue::Entry {
        let fd = types::Fd(op.fd);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        // -1: the current file position (and a stream's only position).
        let at = position.unwrap_or(u64::MAX);
        let access = op.access;
        move |user_data| {
            let entry = match access {
                BufferAccess::Fill => opcode::Read::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
                BufferAccess::Drain => opcode::Write::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
            };
            entry.user_data(user_data)
        }
    }

    /// One attempt that may not wait (RWF_NOWAIT), completed before this
    /// returns, without switching fibers: no other Ruby code runs between
    /// the descriptor's look-up and the kernel's use of it.
    fn now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        let build = Self::entry(op, base, len, position, libc::RWF_NOWAIT);
        // SAFETY: `base..base+len` lies in the locked buffer, which the caller
        // holds until this returns, and the op has completed by then.
        unsafe { self.selector.complete_now(self.ruby, build) }.map(|result| result as isize)
    }

    /// One read or write that waits for the descriptor in the kernel while
    /// the fiber is parked.
    fn park(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        let refs = SlotRefs {
            fiber: Some(op.fiber.into()),
            io: Some(op.io.into()),
            buffer: Some(op.buffer.into()),
            payload: None,
            // The fiber's stack holds whatever owns the memory behind the
            // buffer (a String, an IO's internal buffer): both stay alive
            // until the final completion, whatever happens to the selector.
            pin: Some(Pin::new([op.fiber, op.buffer])),
        };
        let build = Self::entry(op, base, len, position, 0);
        // SAFETY: `base..base+len` lies in the locked, marked buffer, and on any
        // early return the op is drained before the buffer is given back.
        match unsafe { self.selector.park(self.ruby, refs, build, OnInterrupt::Drain) }? {
            Parked::Completed { result } => Ok(result as isize),
            // Resumed by hand with nothing moved: as if not ready yet.
            Parked::NoEvent => Ok(-(libc::EAGAIN as isize)),
        }
    }
}

impl transfer_loop::Io for URing {
    fn transfer(&self, ruby: &Ruby, call: Call) -> Result<i64, Error> {
        transfer_loop::run(ruby, &RingIo { ruby, selector: self }, call)
    }
}
