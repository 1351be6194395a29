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

use magnus::{Error, Integer, RFile, Ruby, Value};

use super::events;
use crate::ruby::buffer::{self, BufferAccess};
use crate::ruby::{error, fiber, io};

/// One I/O call's fixed arguments.
#[derive(Clone, Copy)]
pub struct Transfer {
    pub fiber: Value,
    pub io: Value,
    pub fd: RawFd,
    pub buffer: Value,
    pub access: BufferAccess,
    /// Whether the attempt's bytes may stay in use across a fiber switch
    /// (`Loan::is_steady`). An attempt on bytes that may not must complete
    /// before any other Ruby code runs: it may not park with them.
    pub steady: bool,
}

/// What a backend provides to the loop: single attempts and the wait between them.
pub trait Attempts {
    /// One read (`BufferAccess::Fill`) or write (`BufferAccess::Drain`) of up to `len`
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

    /// Whether the calling fiber may park (`wait_ready`). The loop fiber may
    /// not: waiting there raises, so once some bytes have moved the call
    /// answers them instead (an exception would hide a partial transfer).
    fn may_wait(&self) -> bool {
        true
    }
}

/// Run one call. The descriptor is looked up only when there is something
/// to move: at `offset == buffer.size` the answer is 0 whatever the IO is
/// (closed included), as in io-event.
pub fn run(ruby: &Ruby, backend: &impl Attempts, call: Call) -> Result<i64, Error> {
    let Call { fiber, io, buffer, access, length, offset, position } = call;
    buffer::with_lent(buffer, access, |loan| {
        let mut bytes = loan.bytes();
        if offset > bytes.size {
            return Ok(-i64::from(libc::EINVAL));
        }
        if offset == bytes.size {
            return Ok(0);
        }
        // The descriptor is looked up again before every attempt and every
        // wait: each of them may let other fibers run, and one of them may
        // have closed the IO (IOError) or put another file under its number.
        let current = |steady| -> Result<Transfer, Error> {
            Ok(Transfer { fiber, io, fd: io::descriptor(ruby, io)?, buffer, access, steady })
        };
        let ready_for = match access {
            BufferAccess::Fill => events::READABLE,
            BufferAccess::Drain => events::WRITABLE,
        };
        let mut offset = offset;
        let mut remaining = length;
        let mut total: usize = 0;
        // Whether Ruby code may have run since the bytes were read: the
        // descriptor's look-up of an object that is not an IO calls `to_io`,
        // and a wait lets other fibers run.
        let may_run_ruby = RFile::from_value(io).is_none();
        let mut stale = may_run_ruby;
        while offset < bytes.size {
            let at = position.map(|p| p + total as u64);
            let mut op = current(loan.is_steady())?;
            if !op.steady && stale {
                // Whatever ran since the last look (the descriptor's look-up
                // included) may have changed the buffer: look again, last
                // thing before the attempt.
                bytes = loan.refresh()?;
                op.steady = loan.is_steady();
                stale = may_run_ruby;
                if offset > bytes.size && total == 0 {
                    return Ok(-i64::from(libc::EINVAL));
                }
                if offset >= bytes.size {
                    break;
                }
            }
            // SAFETY: offset < size, so the pointer stays inside the buffer.
            let base = unsafe { bytes.base.add(offset) };
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
                if total > 0 && !backend.may_wait() {
                    break;
                }
                backend.wait_ready(&current(loan.is_steady())?, ready_for)?;
                stale = true;
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

/// One of the four calls, its Ruby arguments checked and converted.
pub struct Call {
    pub fiber: Value,
    pub io: Value,
    pub buffer: Value,
    pub access: BufferAccess,
    pub length: usize,
    pub offset: usize,
    pub position: Option<u64>,
}

/// A backend's way to run a `Call` (usually `run` with its own `Backend`).
pub trait Io {
    fn transfer(&self, ruby: &Ruby, call: Call) -> Result<i64, Error>;
}

#[inline]
fn size_arg(ruby: &Ruby, value: Value, name: &str) -> Result<usize, Error> {
    match crate::selector::fixnum(value).map(usize::try_from) {
        Some(Ok(size)) => Ok(size),
        _ => size_arg_other(ruby, value, name),
    }
}

#[cold]
#[inline(never)]
fn size_arg_other(ruby: &Ruby, value: Value, name: &str) -> Result<usize, Error> {
    let int =
        Integer::from_value(value).ok_or_else(|| error::type_error(ruby, format!("{name} must be an Integer")))?;
    usize::try_from(int.to_i64()?).map_err(|_| error::argument_error(ruby, format!("{name} must not be negative")))
}

impl Call {
    #[inline(always)]
    fn new(
        ruby: &Ruby,
        access: BufferAccess,
        [target, io, buffer]: [Value; 3],
        length: Value,
        offset: Option<Value>,
        position: Option<Value>,
    ) -> Result<Call, Error> {
        let fiber = fiber::check(ruby, target)?;
        let length = size_arg(ruby, length, "length")?;
        let offset = offset.map(|v| size_arg(ruby, v, "offset")).transpose()?.unwrap_or(0);
        let position = position.map(|v| size_arg(ruby, v, "from").map(|p| p as u64)).transpose()?;
        Ok(Call { fiber, io, buffer, access, length, offset, position })
    }

    /// `io_read`/`io_write`: `(fiber, io, buffer, length, offset = 0)`;
    /// Ruby 3.1 passes four arguments, later Rubies five.
    fn stream(ruby: &Ruby, access: BufferAccess, args: &[Value]) -> Result<Call, Error> {
        match *args {
            [fiber, io, buffer, length] => Call::new(ruby, access, [fiber, io, buffer], length, None, None),
            [fiber, io, buffer, length, offset] => {
                Call::new(ruby, access, [fiber, io, buffer], length, Some(offset), None)
            }
            _ => Err(arity(ruby, args.len(), "4..5")),
        }
    }

    /// `io_pread`/`io_pwrite`: `(fiber, io, buffer, from, length, offset)`.
    fn positional(ruby: &Ruby, access: BufferAccess, args: &[Value]) -> Result<Call, Error> {
        match *args {
            [fiber, io, buffer, from, length, offset] => {
                Call::new(ruby, access, [fiber, io, buffer], length, Some(offset), Some(from))
            }
            _ => Err(arity(ruby, args.len(), "6")),
        }
    }
}

fn arity(ruby: &Ruby, given: usize, expected: &str) -> Error {
    error::argument_error(ruby, format!("wrong number of arguments (given {given}, expected {expected})"))
}

/// The four Ruby methods, generic over the backend (see `define_io_methods!`).
pub mod methods {
    use magnus::{Error, Ruby, Value};

    use super::{Call, Io};
    use crate::ruby::buffer::BufferAccess;
    use crate::ruby::receiver::This;

    pub fn io_read<T: Io>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<i64, Error> {
        rb_self.transfer(ruby, Call::stream(ruby, BufferAccess::Fill, args)?)
    }

    pub fn io_write<T: Io>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<i64, Error> {
        rb_self.transfer(ruby, Call::stream(ruby, BufferAccess::Drain, args)?)
    }

    pub fn io_pread<T: Io>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<i64, Error> {
        rb_self.transfer(ruby, Call::positional(ruby, BufferAccess::Fill, args)?)
    }

    pub fn io_pwrite<T: Io>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<i64, Error> {
        rb_self.transfer(ruby, Call::positional(ruby, BufferAccess::Drain, args)?)
    }
}

/// Define `io_read`, `io_write`, `io_pread` and `io_pwrite` on `$class` for
/// the backend type `$backend` (which implements `Io`).
#[macro_export]
macro_rules! define_io_methods {
    ($class:expr, $backend:ty) => {{
        use magnus::Module as _;
        use $crate::selector::transfer_loop::methods;
        let class = $class;
        class.define_method("io_read", $crate::raw_method!(methods::io_read::<$backend>, -1))?;
        class.define_method("io_write", $crate::raw_method!(methods::io_write::<$backend>, -1))?;
        class.define_method("io_pread", $crate::raw_method!(methods::io_pread::<$backend>, -1))?;
        class.define_method("io_pwrite", $crate::raw_method!(methods::io_pwrite::<$backend>, -1))?;
    }};
}
