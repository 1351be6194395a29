//! The shared "read or write at least `length` bytes" loop of `io_read`,
//! `io_write`, `io_pread` and `io_pwrite`, for every backend.
//!
//! Result convention (the fiber scheduler's io-result): bytes transferred, or
//! a negative errno. `offset > buffer.size` is `-EINVAL`; `offset == size`
//! transfers nothing. `length` is the minimum before returning; `0` means one
//! attempt with whatever is there (`-EAGAIN` when nothing is). EOF returns
//! the total so far, and so does an error after some bytes moved (the error
//! will show again on the next call).

use std::os::fd::RawFd;

use magnus::{Error, Value};

use super::events;
use crate::ruby::buffer::{self, Access};

/// One I/O call's fixed arguments.
#[derive(Clone, Copy)]
pub struct Transfer {
    pub fiber: Value,
    pub io: Value,
    pub fd: RawFd,
    pub buffer: Value,
    pub access: Access,
}

/// What a backend provides to the loop.
pub trait Backend {
    /// One read (`Access::Write`) or write (`Access::Read`) of up to `len`
    /// bytes at `base`, at file `position` (`None`: the current position /
    /// a stream). Returns bytes moved or `-errno`.
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error>;

    /// As `attempt`, but must not wait for the descriptor (`length == 0`):
    /// `-EAGAIN` when nothing can be moved now. Backends whose `attempt`
    /// never waits need not override it.
    fn attempt_now(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        self.attempt(op, base, len, position)
    }

    /// Park until the descriptor is ready for `events`.
    fn wait_ready(&self, op: &Transfer, events: i32) -> Result<(), Error>;
}

pub fn run(
    backend: &impl Backend,
    op: Transfer,
    length: usize,
    offset: usize,
    position: Option<u64>,
) -> Result<i64, Error> {
    buffer::with_locked(op.buffer, op.access, |bytes| {
        if offset > bytes.size {
            return Ok(-i64::from(libc::EINVAL));
        }
        let ready_for = match op.access {
            Access::Write => events::READABLE,
            Access::Read => events::WRITABLE,
        };
        let mut offset = offset;
        let mut remaining = length;
        let mut total: usize = 0;
        while offset < bytes.size {
            // SAFETY: offset < size, so the pointer stays inside the buffer.
            let base = unsafe { bytes.base.add(offset) };
            let at = position.map(|p| p + total as u64);
            let result = if length == 0 {
                backend.attempt_now(&op, base, bytes.size - offset, at)?
            } else {
                backend.attempt(&op, base, bytes.size - offset, at)?
            };
            if result > 0 {
                let moved = result as usize;
                total += moved;
                offset += moved;
                if moved >= remaining {
                    break;
                }
                remaining -= moved;
            } else if result == 0 {
                break;
            } else if remaining > 0 && is_again(result) {
                backend.wait_ready(&op, ready_for)?;
            } else if total > 0 {
                break;
            } else {
                return Ok(result as i64);
            }
        }
        Ok(total as i64)
    })
}

fn is_again(result: isize) -> bool {
    let errno = -result as i32;
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK
}
