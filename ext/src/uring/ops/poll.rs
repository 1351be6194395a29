//! `io_wait` through a one-shot poll.

use crate::ruby::receiver::This;
use std::os::fd::RawFd;

use io_uring::{opcode, types};
use magnus::{Error, IntoValue, Ruby, Value};

use super::park::{OnInterrupt, Parked};
use crate::ruby::error;
use crate::selector::events;
use crate::uring::{SlotRefs, URing};

pub fn io_wait(ruby: &Ruby, rb_self: This<URing>, target: Value, io: Value, events: Value) -> Result<Value, Error> {
    let (target, fd, wanted) = crate::selector::io_wait_arguments(ruby, target, io, events)?;
    Ok(match wait(ruby, &rb_self, target, io, fd, wanted)? {
        Some(ready) => ready.into_value_with(ruby),
        None => false.into_value_with(ruby),
    })
}

/// Park `target` until `fd` is ready for `wanted`: the ready events, or
/// `None` when resumed without an event.
pub fn wait(
    ruby: &Ruby,
    rb_self: &URing,
    target: Value,
    io: Value,
    fd: RawFd,
    wanted: i32,
) -> Result<Option<i32>, Error> {
    let mask = events::to_poll(wanted);
    let refs = SlotRefs { fiber: Some(target.into()), io: Some(io.into()), ..SlotRefs::default() };
    let build = |user_data| opcode::PollAdd::new(types::Fd(fd), mask).build().user_data(user_data);
    // SAFETY: a poll points at no memory.
    match unsafe { rb_self.park(ruby, refs, build, OnInterrupt::Orphan) }? {
        Parked::Completed { result } if result >= 0 => Ok(Some(events::from_poll(result as u32, wanted))),
        Parked::Completed { result } => Err(error::syserr(ruby, -result, "io_wait")),
        Parked::NoEvent => Ok(None),
    }
}
