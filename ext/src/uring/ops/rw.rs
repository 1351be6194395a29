//! `io_read`, `io_write`, `io_pread` and `io_pwrite` through the ring, on top
//! of the shared transfer loop. An attempt that may not wait (a write's
//! first try, every `length == 0` call) completes inside the enter that
//! submits it; an attempt that waits parks the fiber on an op that lends the
//! caller's buffer to the kernel, so if the fiber leaves early the op is
//! cancelled and drained before the error propagates (`OnInterrupt::Drain`).

use io_uring::{opcode, squeue, types};
use std::os::fd::RawFd;

use magnus::{rb_sys::AsRawValue, Error, Ruby};

use super::park::{OnInterrupt, Parked};
use super::poll;
use crate::epoll::nonblock::{self, Channel};
use crate::ruby::buffer::BufferAccess;
use crate::ruby::pins::Pin;
use crate::selector::fd_memo::FdMemo;
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
    /// The loop fiber cannot park: it only tries (and `run` does not wait).
    /// Bytes that are not steady never reach the ring (`nonblocking`).
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if !op.steady {
            return Ok(self.nonblocking(op, base, len, position));
        }
        if op.access == BufferAccess::Fill && self.may_wait() {
            return self.park(op, base, len, position);
        }
        // A write, or a read on the loop fiber: try at once.
        let result = self.now(op, base, len, position)?;
        if !would_wait(result) {
            return Ok(result);
        }
        if op.access == BufferAccess::Fill || !self.may_wait() {
            return Ok(-(libc::EAGAIN as isize));
        }
        self.park(op, base, len, position)
    }

    /// One attempt that does not wait for readiness. A file that refuses
    /// RWF_NOWAIT (`-EOPNOTSUPP`: tmpfs, for one), or a regular file that
    /// answers `-EAGAIN` (ext4 does for a write that would block on the
    /// disk), gets the op that may wait: a file never waits for readiness,
    /// so that op is still one attempt (and `io_wait` would call the file
    /// ready at once, over and over).
    fn attempt_now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if !op.steady {
            return Ok(self.nonblocking(op, base, len, position));
        }
        let result = self.now(op, base, len, position)?;
        let refused = result == -(libc::EOPNOTSUPP as isize)
            || (result == -(libc::EAGAIN as isize)
                && self.selector.kinds.borrow_mut().get(op.fd, op.io.as_raw(), is_file));
        if refused {
            return self.park(op, base, len, position);
        }
        Ok(result)
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

/// Whether each descriptor is a file that never waits for readiness (a
/// regular file, a block device, a directory), asked once (`fstat`) per
/// descriptor number and IO object. A stale answer (`IO#reopen` onto
/// another kind of file under the same number and IO) is not asked again:
/// it costs an op that may wait where none was needed, or, for a regular
/// file remembered as something else, `-EAGAIN` answers (and `io_wait`
/// calling the file ready) until the disk has caught up: a busy wait, never
/// a wrong result.
pub type Kinds = FdMemo<bool>;

fn is_file(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the out-pointer (checked by the result).
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled the struct in.
    let mode = unsafe { stat.assume_init() }.st_mode & libc::S_IFMT;
    matches!(mode, libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR)
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

    /// One attempt that may not wait (RWF_NOWAIT), made by this thread as a
    /// plain system call: what a ring op with that flag does, without the
    /// ring's round (an SQE, an enter, a reap). No other Ruby code runs
    /// between the descriptor's look-up and the kernel's use of it, and the
    /// kernel is done with the bytes when it returns.
    fn now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        // Refused as a ring op would be: from another thread, in a forked
        // child, on a closed selector.
        self.selector.core.check_owner(self.ruby)?;
        self.selector.with_ring(self.ruby, |_| ())?;
        Ok(nonblock::nowait(op.fd, op.access, base, len, position))
    }

    /// One attempt with bytes that are not steady (`Loan::is_steady`): not
    /// through the ring, whose op could still be in the kernel's hands after
    /// a failure had made us give up on it, but as the EPoll selector makes
    /// it: `recv`/`send` with `MSG_DONTWAIT` on a socket, otherwise a
    /// `read`/`write` with `O_NONBLOCK` set for the call (a regular file
    /// ignores it: the call waits for the disk with the GVL held). The
    /// kernel is done with the bytes when it returns.
    fn nonblocking(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> isize {
        let route = self.selector.routes.borrow_mut().get(op.fd, op.io.as_raw(), nonblock::probe);
        let channel = Channel::new(op.fd, route);
        let (result, changed) = channel.attempt(op.access, base, len, position);
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
