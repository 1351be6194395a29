//! `io_read`, `io_write`, `io_pread` and `io_pwrite` through the ring, on top
//! of the shared transfer loop. Each attempt lends the caller's buffer to the
//! kernel, so an interrupted attempt is cancelled and drained before the
//! error propagates (`OnInterrupt::Drain`).

use io_uring::{opcode, types};
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
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        self.submit(op, base, len, position, 0)
    }

    fn attempt_now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        let result = self.submit(op, base, len, position, libc::RWF_NOWAIT)?;
        if result == -(libc::EOPNOTSUPP as isize) {
            // Some files (tmpfs, for one) refuse RWF_NOWAIT; a regular file
            // never waits for readiness anyway.
            return self.submit(op, base, len, position, 0);
        }
        Ok(result)
    }

    fn wait_ready(&self, op: &Transfer, events: i32) -> Result<(), Error> {
        poll::wait(self.ruby, self.selector, op.fiber, op.io, op.fd, events).map(drop)
    }
}

impl RingIo<'_> {
    /// One read or write through the ring. On a pollable descriptor the
    /// kernel waits for readiness by itself, unless `rw_flags` has RWF_NOWAIT.
    fn submit(
        &self,
        op: &Transfer,
        base: *mut u8,
        len: usize,
        position: Option<u64>,
        rw_flags: i32,
    ) -> Result<isize, Error> {
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
        let fd = types::Fd(op.fd);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        // -1: the current file position (and a stream's only position).
        let at = position.unwrap_or(u64::MAX);
        let access = op.access;
        let build = move |user_data| {
            let entry = match access {
                BufferAccess::Fill => opcode::Read::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
                BufferAccess::Drain => opcode::Write::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
            };
            entry.user_data(user_data)
        };
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
