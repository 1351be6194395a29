//! `io_close` through the ring, submitted at once: the descriptor is closed
//! when the call returns (and SQEs queued before it for that descriptor were
//! consumed first).

use crate::ruby::receiver::This;
use io_uring::{opcode, types};
use magnus::{Error, Ruby, Value};

use crate::ruby::{error, io};
use crate::uring::URing;

pub fn io_close(ruby: &Ruby, rb_self: This<URing>, descriptor: Value) -> Result<bool, Error> {
    let fd = io::descriptor(ruby, descriptor)?;
    let build = |user_data| opcode::Close::new(types::Fd(fd)).build().user_data(user_data);
    // SAFETY: a close points at no memory.
    let result = unsafe { rb_self.complete_now(ruby, None, build) }?;
    if result < 0 {
        return Err(error::syserr(ruby, -result, "io_close"));
    }
    Ok(true)
}
