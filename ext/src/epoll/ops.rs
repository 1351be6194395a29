//! The parking calls of the EPoll selector: `io_wait`, the buffered I/O
//! (`io_read`, `io_write`, `io_pread`, `io_pwrite`) on the shared transfer
//! loop, `io_close` and `process_wait` through a pidfd.
//!
//! Every wait goes through `EPoll::park`: register a waiter, switch to the
//! loop, and take the waiter's slot back on whichever route the fiber comes
//! back by. A waiter that leaves without its event (an exception, a resume
//! by hand) is unlinked and the registration narrowed before the fiber goes
//! on, so no later event can resume it. Reads and writes are plain
//! non-blocking system calls made by the fiber itself (`nonblock.rs`): the
//! kernel never holds the caller's buffer past the call, so there is nothing
//! to cancel.

use std::os::fd::{AsRawFd, RawFd};

use magnus::{rb_sys::AsRawValue, Error, IntoValue, Ruby, Value};

use super::nonblock::{self, Channel, Route};
use super::registry::Outcome;
use super::{Anchor, EPoll, WaiterRefs};
use crate::ruby::receiver::This;
use crate::ruby::{error, fiber, io};
use crate::selector::events;
use crate::selector::process_wait::{self, Change, ChildWait};
use crate::selector::transfer_loop::{self, Call, Transfer};
use crate::sys;

/// How a park ended for the waiter.
pub enum Readiness {
    Ready(i32),
    /// Resumed without an event.
    Cancelled,
    /// epoll refuses the descriptor (EPERM: regular files and directories,
    /// which are always ready).
    Unpollable,
}

impl EPoll {
    /// Park the current fiber until `fd` is ready for `wanted`; the loop will
    /// resume `refs.fiber`. Errors from the switch (an exception raised into
    /// the fiber, `Fiber#kill`, a throw) propagate after the waiter is gone.
    fn park(&self, ruby: &Ruby, fd: RawFd, wanted: i32, refs: WaiterRefs) -> Result<Readiness, Error> {
        self.core.check_owner(ruby)?;
        let loop_fiber = self.core.loop_to_park_on(ruby)?;
        let kernel = self.open_kernel(ruby)?;
        let anchor = refs.io.map(|io| Anchor::new(ruby.get_inner(io)));
        let added = self.registry.borrow_mut().add(fd, wanted, anchor, refs, &kernel);
        let id = match added {
            Ok(id) => id,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(Readiness::Unpollable),
            Err(e) => return Err(error::from_io(ruby, e, "epoll_ctl")),
        };

        let switched = fiber::transfer(loop_fiber, &[]);

        let taken = self.registry.borrow_mut().take(id);
        let (outcome, refs) = match taken {
            Some((outcome, refs)) => (outcome, Some(refs)),
            None => (Outcome::Cancelled, None),
        };
        if refs.as_ref().is_some_and(|refs| refs.owned.is_some()) {
            // Our own descriptor (a pidfd), about to be closed: delete its
            // registration while the number still names it.
            self.registry.borrow_mut().forget(fd, &self.kernel());
        }
        drop(refs);
        switched?;
        Ok(match outcome {
            Outcome::Ready(events) => Readiness::Ready(events),
            Outcome::Cancelled => Readiness::Cancelled,
        })
    }

    /// Let the other fibers run once (the loop resumes us at its next
    /// `select`): what waiting on an always-ready descriptor amounts to.
    fn yield_once(&self, ruby: &Ruby) -> Result<(), Error> {
        let loop_fiber = self.core.loop_fiber(ruby);
        if loop_fiber.as_raw() == fiber::current(ruby).as_raw() {
            return Ok(()); // The loop itself: nobody else to let run.
        }
        self.core.resume(ruby, loop_fiber, &[]).map(drop)
    }
}

fn waiter(target: Value, io: Option<Value>) -> WaiterRefs {
    WaiterRefs { fiber: target.into(), io: io.map(Into::into), owned: None }
}

// --- io_wait -----------------------------------------------------------------

/// `io_wait(fiber, io, events)`: the ready events (only bits asked for), or
/// `false` when resumed without an event.
pub fn io_wait(ruby: &Ruby, rb_self: This<EPoll>, target: Value, io: Value, events: Value) -> Result<Value, Error> {
    let (target, fd, wanted) = crate::selector::io_wait_arguments(ruby, target, io, events)?;
    Ok(match rb_self.park(ruby, fd, wanted, waiter(target, Some(io)))? {
        Readiness::Ready(ready) => ready.into_value_with(ruby),
        Readiness::Cancelled => false.into_value_with(ruby),
        Readiness::Unpollable => {
            rb_self.yield_once(ruby)?;
            (wanted & (events::READABLE | events::PRIORITY | events::WRITABLE)).into_value_with(ruby)
        }
    })
}

// --- io_read, io_write, io_pread, io_pwrite -----------------------------------

struct EPollIo<'a> {
    ruby: &'a Ruby,
    selector: &'a EPoll,
    channel: Channel,
}

impl transfer_loop::Attempts for EPollIo<'_> {
    fn attempt(&self, op: &Transfer, base: *mut u8, len: usize, position: Option<u64>) -> Result<isize, Error> {
        if op.fd != self.channel.fd() {
            // The IO was reopened onto another descriptor mid-call.
            return Ok(-(libc::EBADF as isize));
        }
        let (result, changed) = self.channel.attempt(op.access, base, len, position);
        if let Some(route) = changed {
            self.selector.routes.borrow_mut().set(op.fd, op.io.as_raw(), route);
        }
        Ok(result)
    }

    fn may_wait(&self) -> bool {
        self.selector.core.may_park(self.ruby)
    }

    /// Park until ready. Resumed by hand, the loop just tries again (and
    /// parks again when there is still nothing to read).
    fn wait_ready(&self, op: &Transfer, events: i32) -> Result<(), Error> {
        let refs = waiter(op.fiber, Some(op.io));
        match self.selector.park(self.ruby, op.fd, events, refs)? {
            Readiness::Unpollable => self.selector.yield_once(self.ruby),
            Readiness::Ready(_) | Readiness::Cancelled => Ok(()),
        }
    }
}

impl transfer_loop::Io for EPoll {
    fn transfer(&self, ruby: &Ruby, call: Call) -> Result<i64, Error> {
        self.open_kernel(ruby)?;
        let io = call.io;
        // A closed IO is reported by `run` (unless there is nothing to move),
        // before the channel is ever used.
        let fd = io::descriptor(ruby, io).unwrap_or(-1);
        let route = match fd {
            0.. => self.routes.borrow_mut().get(fd, io.as_raw(), nonblock::probe),
            _ => Route::Plain,
        };
        let backend = EPollIo { ruby, selector: self, channel: Channel::new(fd, route) };
        let result = transfer_loop::run(ruby, &backend, call);
        backend.channel.finish(|| io::descriptor(ruby, io).ok() == Some(fd));
        result
    }
}

// --- io_close ----------------------------------------------------------------

/// `io_close(fd)`: drop the descriptor's registration (while the number
/// still names the file), wake anyone waiting on it, then close(2) it.
pub fn io_close(ruby: &Ruby, rb_self: This<EPoll>, descriptor: Value) -> Result<bool, Error> {
    let fd = io::descriptor(ruby, descriptor)?;
    rb_self.registry.borrow_mut().forget(fd, &rb_self.kernel());
    // SAFETY: closes a descriptor number the caller hands over to us.
    if unsafe { libc::close(fd) } < 0 {
        let error = std::io::Error::last_os_error();
        // After EINTR the descriptor is closed all the same (Linux).
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error::from_io(ruby, error, "close"));
        }
    }
    Ok(true)
}

// --- process_wait -------------------------------------------------------------

/// `process_wait(fiber, pid, flags)`: park until child `pid` changes state
/// and return its `Process::Status`. The fiber waits on a pidfd (readable
/// once the child has exited); the status is reaped only by the call that
/// returns it (`Process::Status.wait(pid, flags | WNOHANG)`), so an
/// interrupted wait consumes nothing. The pidfd is owned by the waiter's slot
/// and closed on every route. `pid <= 0` (any child, a process group) goes to
/// `IO::Event::Selector.process_wait`. Resumed by hand: `nil`.
pub fn process_wait(ruby: &Ruby, rb_self: This<EPoll>, target: Value, pid: i32, flags: i32) -> Result<Value, Error> {
    let target = fiber::check(ruby, target)?;
    rb_self.core.check_owner(ruby)?;
    rb_self.open_kernel(ruby)?;
    process_wait::process_wait(ruby, &*rb_self, target, pid, flags)
}

/// Waits for a pidfd (owned by the waiter, so closed on every exit path) to
/// become readable.
impl ChildWait for EPoll {
    fn wait_for_change(&self, ruby: &Ruby, fiber: Value, pid: i32, _flags: i32) -> Result<Change, Error> {
        let pidfd = match sys::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            // Gone since the reap: reaping again reports it.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Change::Changed),
            // No pidfds here (before Linux 5.3): a helper thread waits.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(Change::Unsupported),
            Err(e) => return Err(error::from_io(ruby, e, "pidfd_open")),
        };
        let fd = pidfd.as_raw_fd();
        let refs = WaiterRefs { fiber: fiber.into(), io: None, owned: Some(pidfd) };
        Ok(match self.park(ruby, fd, events::READABLE, refs)? {
            Readiness::Ready(_) => Change::Changed,
            Readiness::Cancelled => Change::NoEvent,
            Readiness::Unpollable => Change::Unsupported,
        })
    }
}
