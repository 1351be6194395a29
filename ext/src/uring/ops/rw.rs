//! `io_read`, `io_write`, `io_pread` and `io_pwrite` through the ring, on top
//! of the shared transfer loop. Each attempt lends the caller's buffer to the
//! kernel, so an interrupted attempt is cancelled and drained before the
//! error propagates (`OnInterrupt::Drain`).

use io_uring::{opcode, types};
use magnus::{Error, Integer, Ruby, Value};

use super::park::{OnInterrupt, Parked};
use super::poll;
use crate::ruby::buffer::Access;
use crate::ruby::{error, fiber, io};
use crate::selector::transfer_loop::{self, Transfer};
use crate::uring::{SlotRefs, URing};

struct RingIo<'a> {
    ruby: &'a Ruby,
    selector: &'a URing,
}

impl transfer_loop::Backend for RingIo<'_> {
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
        };
        let fd = types::Fd(op.fd);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        // -1: the current file position (and a stream's only position).
        let at = position.unwrap_or(u64::MAX);
        let access = op.access;
        let build = move |user_data| {
            let entry = match access {
                Access::Write => opcode::Read::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
                Access::Read => opcode::Write::new(fd, base, len).offset(at).rw_flags(rw_flags).build(),
            };
            entry.user_data(user_data)
        };
        // SAFETY: `base..base+len` lies in the locked, marked buffer, and on any
        // early return the op is drained before the buffer is given back.
        match unsafe { self.selector.park(self.ruby, refs, build, OnInterrupt::Drain, false) }? {
            Parked::Completed { result } => Ok(result as isize),
            // Resumed by hand with nothing moved: as if not ready yet.
            Parked::NoEvent => Ok(-(libc::EAGAIN as isize)),
        }
    }
}

fn size_arg(ruby: &Ruby, value: Value, name: &str) -> Result<usize, Error> {
    let int =
        Integer::from_value(value).ok_or_else(|| error::type_error(ruby, format!("{name} must be an Integer")))?;
    let int = int.to_i64()?;
    usize::try_from(int).map_err(|_| error::argument_error(ruby, format!("{name} must not be negative")))
}

fn run(
    ruby: &Ruby,
    selector: &URing,
    access: Access,
    args: [Value; 3],
    length: Value,
    offset: Option<Value>,
    position: Option<Value>,
) -> Result<i64, Error> {
    let [target, io, buffer] = args;
    let target = fiber::check(ruby, target)?;
    let fd = io::descriptor(ruby, io)?;
    let length = size_arg(ruby, length, "length")?;
    let offset = offset.map(|v| size_arg(ruby, v, "offset")).transpose()?.unwrap_or(0);
    let position = position.map(|v| size_arg(ruby, v, "from")).transpose()?.map(|p| p as u64);
    let op = Transfer { fiber: target, io, fd, buffer, access };
    transfer_loop::run(&RingIo { ruby, selector }, op, length, offset, position)
}

/// `(fiber, io, buffer, length, offset = 0)`: Ruby 3.1 passes four, later Rubies five.
fn split_args(ruby: &Ruby, args: &[Value]) -> Result<([Value; 3], Value, Option<Value>), Error> {
    match *args {
        [fiber, io, buffer, length] => Ok(([fiber, io, buffer], length, None)),
        [fiber, io, buffer, length, offset] => Ok(([fiber, io, buffer], length, Some(offset))),
        _ => {
            Err(error::argument_error(ruby, format!("wrong number of arguments (given {}, expected 4..5)", args.len())))
        }
    }
}

pub fn io_read(ruby: &Ruby, rb_self: &URing, args: &[Value]) -> Result<i64, Error> {
    let (args, length, offset) = split_args(ruby, args)?;
    run(ruby, rb_self, Access::Write, args, length, offset, None)
}

pub fn io_write(ruby: &Ruby, rb_self: &URing, args: &[Value]) -> Result<i64, Error> {
    let (args, length, offset) = split_args(ruby, args)?;
    run(ruby, rb_self, Access::Read, args, length, offset, None)
}

// Ruby calls it with six arguments.
#[allow(clippy::too_many_arguments)]
pub fn io_pread(
    ruby: &Ruby,
    rb_self: &URing,
    target: Value,
    io: Value,
    buffer: Value,
    from: Value,
    length: Value,
    offset: Value,
) -> Result<i64, Error> {
    run(ruby, rb_self, Access::Write, [target, io, buffer], length, Some(offset), Some(from))
}

// Ruby calls it with six arguments.
#[allow(clippy::too_many_arguments)]
pub fn io_pwrite(
    ruby: &Ruby,
    rb_self: &URing,
    target: Value,
    io: Value,
    buffer: Value,
    from: Value,
    length: Value,
    offset: Value,
) -> Result<i64, Error> {
    run(ruby, rb_self, Access::Read, [target, io, buffer], length, Some(offset), Some(from))
}
