//! `process_wait`'s wait for a child (`selector/process_wait.rs` does the
//! rest): waitid through the ring (6.7+), else a poll of a pidfd. Both only
//! learn that the child changed state (waitid runs with WNOWAIT). The
//! `siginfo_t` (a pool slot) and the pidfd are owned by the slot and given
//! back with it.

use io_uring::{opcode, types};
use magnus::{Error, Ruby, Value};

use super::park::{OnInterrupt, Parked};
use crate::ruby::receiver::This;
use crate::ruby::{error, fiber};
use crate::selector::events;
use crate::selector::process_wait::{self, Change, ChildWait};
use crate::sys;
use crate::uring::siginfo::SigInfo;
use crate::uring::{Payload, SlotRefs, URing};

pub fn process_wait(ruby: &Ruby, rb_self: This<URing>, target: Value, pid: i32, flags: i32) -> Result<Value, Error> {
    let target = fiber::check(ruby, target)?;
    rb_self.core.check_owner(ruby)?;
    rb_self.with_ring(ruby, |_| ())?;
    process_wait::process_wait(ruby, &*rb_self, target, pid, flags)
}

impl ChildWait for URing {
    fn wait_for_change(&self, ruby: &Ruby, fiber: Value, pid: i32, flags: i32) -> Result<Change, Error> {
        Ok(if wait_for_change(ruby, self, fiber, pid, flags)? { Change::Changed } else { Change::NoEvent })
    }
}

/// Park until `pid` changed state. False when resumed without an event.
/// A process that is gone (or not ours) returns true at once, so that the
/// reap reports the right error (ECHILD).
fn wait_for_change(ruby: &Ruby, rb_self: &URing, target: Value, pid: i32, flags: i32) -> Result<bool, Error> {
    let has_waitid = rb_self.with_ring(ruby, |ring| ring.has_waitid())?;
    let mut refs = SlotRefs { fiber: Some(target.into()), ..SlotRefs::default() };
    let parked = if has_waitid {
        let mut options = libc::WEXITED | libc::WNOWAIT;
        if flags & libc::WUNTRACED != 0 {
            options |= libc::WSTOPPED;
        }
        if flags & libc::WCONTINUED != 0 {
            options |= libc::WCONTINUED;
        }
        let info = SigInfo::new(pid);
        let infop = info.as_ptr();
        refs.payload = Some(Payload::SigInfo(info));
        let build = move |user_data| {
            opcode::WaitId::new(libc::P_PID, pid as libc::id_t, options).infop(infop).build().user_data(user_data)
        };
        // SAFETY: the siginfo slot is owned by the slot's payload until the final
        // completion (and pool memory is never freed in any case).
        unsafe { rb_self.park(ruby, refs, build, OnInterrupt::Orphan) }?
    } else {
        let pidfd = match sys::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(true),
            Err(error) => return Err(error::from_io(ruby, error, "pidfd_open")),
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
        refs.payload = Some(Payload::PidFd(pidfd));
        let mask = events::to_poll(events::READABLE);
        let build = move |user_data| opcode::PollAdd::new(types::Fd(fd), mask).build().user_data(user_data);
        // SAFETY: the pidfd is owned by the slot until the final completion.
        unsafe { rb_self.park(ruby, refs, build, OnInterrupt::Orphan) }?
    };
    match parked {
        // ECHILD and friends: let the reap raise the matching Errno.
        Parked::Completed { .. } => Ok(true),
        Parked::NoEvent => Ok(false),
    }
}
