//! `io_read`, `io_write`, `io_pread` and `io_pwrite` through the ring, on top
//! of the shared transfer loop. An attempt that may not wait (a write's
//! first try, every `length == 0` call) completes before the call goes on,
//! without switching fibers: a system call that does not wait, or on a file
//! an op with `RWF_NOWAIT` completed inside the enter that submits it. An
//! attempt that waits parks the fiber on an op that lends the caller's
//! buffer to the kernel, so if the fiber leaves early the op is cancelled and
//! drained before the error propagates (`OnInterrupt::Drain`).

use io_uring::{opcode, squeue, types};

use magnus::{rb_sys::AsRawValue, Error, Ruby};

use super::park::{OnInterrupt, Parked};
use super::poll;
use crate::epoll::nonblock::{self, Channel, Route};
use crate::ruby::buffer::BufferAccess;
use crate::ruby::pins::Pin;
use crate::selector::transfer_loop::{self, Call, Transfer};
use crate::uring::{SlotRefs, URing};

struct RingIo<'a> {
    ruby: &'a Ruby,
    selector: &'a URing,
}

impl transfer_loop::Attempts for RingIo<'_> {
    /// A write is tried at once first: a socket or pipe usually has room, so
    /// the fiber need not switch away and back. Only a write that would
    /// block, and every read (whose data has usually not arrived yet), park
    /// on an op that the kernel completes when the descriptor is ready. The
    /// loop fiber cannot park: it only tries (and `run` does not wait).
    /// Bytes that are not steady never reach the ring (`nonblocking`).
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if !op.steady {
            return Ok(self.nonblocking(self.route(op), op, base, len, position));
        }
        if op.access == BufferAccess::Fill && self.may_wait() {
            return self.park(op, base, len, position);
        }
        // A write, or a read on the loop fiber: try at once.
        let (result, _) = self.now(op, base, len, position)?;
        if !would_wait(result) {
            return Ok(result);
        }
        if op.access == BufferAccess::Fill || !self.may_wait() {
            return Ok(-(libc::EAGAIN as isize));
        }
        self.park(op, base, len, position)
    }

    /// One attempt that does not wait for readiness. A file that refuses
    /// RWF_NOWAIT (`-EOPNOTSUPP`: tmpfs, for one), or answers `-EAGAIN`
    /// (ext4 does for a write that would block on the disk), gets the op
    /// that may wait: a file never waits for readiness, so that op is still
    /// one attempt (and `io_wait` would call the file ready at once, over
    /// and over).
    fn attempt_now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if !op.steady {
            return Ok(self.nonblocking(self.route(op), op, base, len, position));
        }
        match self.now(op, base, len, position)? {
            (result, Route::File) if would_wait(result) => {
                // Parking is right for a file only: a stale answer (the IO
                // reopened onto a pipe, a descriptor number reused) would
                // park where the call must answer at once. Asked again here,
                // off the fast path.
                match nonblock::probe(op.fd) {
                    Route::File => self.park(op, base, len, position),
                    route => {
                        self.selector.routes.borrow_mut().set(op.fd, op.io.as_raw(), route);
                        Ok(self.nonblocking(route, op, base, len, position))
                    }
                }
            }
            (result, _) => Ok(result),
        }
    }

    fn wait_ready(&self, op: &Transfer, events: i32) -> Result<(), Error> {
        poll::wait(self.ruby, self.selector, op.fiber, op.io, op.fd, events).map(drop)
    }

    fn may_wait(&self) -> bool {
        self.selector.core.may_park(self.ruby)
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

    /// How attempts reach `op`'s descriptor without waiting (`nonblock`),
    /// asked once per descriptor and IO object. A stale answer (`IO#reopen`,
    /// a reused number): a socket route meets ENOTSOCK and a refused
    /// `RWF_NOWAIT` asks again (`Channel`); a file route asked again before
    /// a `length == 0` call would park (`attempt_now`); a first write on a
    /// file route that is a pipe now parks on an op that waits for room, as
    /// it should; and a regular file remembered as something else answers
    /// `-EAGAIN`, and `io_wait` calls it ready, until the disk has caught up
    /// (a busy wait, never a wrong result).
    fn route(&self, op: &Transfer) -> Route {
        self.selector.routes.borrow_mut().get(op.fd, op.io.as_raw(), nonblock::probe)
    }

    /// One attempt that may not wait, completed before this returns, without
    /// switching fibers (no other Ruby code runs between the descriptor's
    /// look-up and its use), with the route it took. On a file, an op with
    /// RWF_NOWAIT completed inside the enter that submits it: a system call
    /// could block this thread, GVL held, where the ring answers at once (a
    /// frozen filesystem; another thread holding the file's position). On
    /// anything else, a system call that does not wait (`nonblocking`), one
    /// system call either way and no ring op to set up and reap.
    fn now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<(isize, Route), Error> {
        let route = self.route(op);
        if route != Route::File {
            // Refused as the ring op is (`complete_now` checks the same): from
            // another thread, in a forked child, on a closed selector.
            self.selector.core.check_owner(self.ruby)?;
            self.selector.with_ring(self.ruby, |_| ())?;
            return Ok((self.nonblocking(route, op, base, len, position), route));
        }
        let build = Self::entry(op, base, len, position, libc::RWF_NOWAIT);
        // SAFETY: the bytes lie in the lent buffer, steady (the lock is ours),
        // which the caller holds until this returns; the op has completed by
        // then, or, if the ring failed first, the buffer is kept lent for good.
        let result = unsafe { self.selector.complete_now(self.ruby, Some(op.buffer), build) }?;
        Ok((result as isize, route))
    }

    /// One attempt as the EPoll selector makes it (`nonblock::Channel`):
    /// `recv`/`send` with `MSG_DONTWAIT` on a socket, `preadv2`/`pwritev2`
    /// with `RWF_NOWAIT` on a pipe, `read`/`write` with `O_NONBLOCK` set for
    /// the call on a file that refuses that flag (a tty, a named FIFO) and on
    /// a regular file (which then waits for the disk with the GVL held). The
    /// kernel is done with the bytes when it returns. Used for every attempt
    /// with bytes that are not steady (`Loan::is_steady`), whose op could
    /// still be in the kernel's hands after a ring failure had made us give
    /// up on it. A position is ignored where the ring's ops ignore it (for
    /// which `preadv2` answers `ESPIPE`): any position on a pipe, position 0
    /// on a socket (any other is `ESPIPE` for the ring's op too).
    fn nonblocking(&self, route: Route, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> isize {
        let channel = Channel::new(op.fd, route);
        let (mut result, mut changed) = channel.attempt(op.access, base, len, position);
        let ring_ignores = match route {
            Route::Socket { .. } => position == Some(0),
            _ => position.is_some(),
        };
        if ring_ignores && result == -(libc::ESPIPE as isize) {
            let (stream, rerouted) = channel.attempt(op.access, base, len, None);
            result = stream;
            changed = rerouted.or(changed);
        }
        if let Some(route) = changed {
            self.selector.routes.borrow_mut().set(op.fd, op.io.as_raw(), route);
        }
        channel.finish(|| crate::ruby::io::descriptor(self.ruby, op.io).ok() == Some(op.fd));
        result
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
