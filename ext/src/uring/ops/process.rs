//! `process_wait`'s wait for a child (`selector/process_wait.rs` does the
//! rest): a poll of a pidfd, which only learns that the child exited. The
//! pidfd is owned by the slot and closed with it.

use io_uring::{opcode, types};
use magnus::{Error, Ruby, Value};

use super::park::{OnInterrupt, Parked};
use crate::ruby::receiver::This;
use crate::ruby::{error, fiber};
use crate::selector::events;
use crate::selector::process_wait::{self, Change, ChildWait};
use crate::sys;
use crate::uring::{Payload, SlotRefs, URing};

pub fn process_wait(ruby: &Ruby, rb_self: This<URing>, target: Value, pid: i32, flags: i32) -> Result<Value, Error> {
    let target = fiber::check(ruby, target)?;
    rb_self.core.check_owner(ruby)?;
    rb_self.with_ring(ruby, |_| ())?;
    process_wait::process_wait(ruby, &*rb_self, target, pid, flags)
}

impl ChildWait for URing {
    fn wait_for_change(&self, ruby: &Ruby, fiber: Value, pid: i32, _flags: i32) -> Result<Change, Error> {
        wait_for_change(ruby, self, fiber, pid)
    }
}

/// Park until `pid` changed state: a poll of a pidfd, which names no memory
/// of ours. (`IORING_OP_WAITID` is not used: the kernel writes its
/// `siginfo_t` whenever the op ends, and an op that ends in the kernel's
/// exit work or fallback worker, as one still in flight when the ring goes
/// away does, is written through whatever address space that worker has
/// borrowed: another process's, a parent's whose heap mirrors ours after a
/// fork. DESIGN.md, "process_wait".) `NoEvent` when resumed without an event. A
/// process that is gone (or not ours) returns `Changed` at once, so that the
/// reap reports the right error (ECHILD).
fn wait_for_change(ruby: &Ruby, rb_self: &URing, target: Value, pid: i32) -> Result<Change, Error> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(Change::Changed),
        // No pidfds here (before Linux 5.3, or refused): a helper thread waits.
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            return Ok(Change::Unsupported)
        }
        Err(error) => return Err(error::from_io(ruby, error, "pidfd_open")),
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
    let refs = SlotRefs { fiber: Some(target.into()), payload: Some(Payload::PidFd(pidfd)), ..SlotRefs::default() };
    let mask = events::to_poll(events::READABLE);
    let build = move |user_data| opcode::PollAdd::new(types::Fd(fd), mask).build().user_data(user_data);
    // SAFETY: the entry names no memory; the pidfd is owned by the slot until
    // the final completion.
    match unsafe { rb_self.park(ruby, refs, build, OnInterrupt::Orphan) }? {
        // ECHILD and friends: let the reap raise the matching Errno.
        Parked::Completed { .. } => Ok(Change::Changed),
        Parked::NoEvent => Ok(Change::NoEvent),
    }
}
