//! `process_wait` for every backend: reap without blocking first, and only
//! when the child has not changed state yet, park until it does (the
//! backend's `ChildWait`), then reap again.
//!
//! Reaping first answers at once for a child that already exited and for a
//! pid that is not our child (`Errno::ECHILD`), and the backends' waits only
//! learn that the child changed state (a pidfd), so an
//! interrupted wait never consumes an exit status that a later
//! `Process.wait(pid)` should get. `pid <= 0` (any child, a process group)
//! goes to `IO::Event::Selector.process_wait`, which waits on a helper thread.

use magnus::{prelude::*, value::Lazy, Error, RClass, RModule, Ruby, Value};

/// How a backend's wait for a child ended.
pub enum Change {
    /// The child changed state (or is gone: the reap will say).
    Changed,
    /// Resumed without an event: `process_wait` answers `nil`.
    NoEvent,
    /// The backend cannot wait for this child here: a helper thread will.
    Unsupported,
}

pub trait ChildWait {
    fn wait_for_change(&self, ruby: &Ruby, fiber: Value, pid: i32, flags: i32) -> Result<Change, Error>;
}

static PROCESS_STATUS: Lazy<RClass> = Lazy::new(|ruby| {
    let process: RModule = ruby.class_object().const_get("Process").expect("Process is defined");
    process.const_get("Status").expect("Process::Status is defined")
});

static SELECTOR_MODULE: Lazy<RModule> = Lazy::new(|ruby| {
    let event: RModule = ruby.class_io().const_get("Event").expect("IO::Event is defined");
    event.const_get("Selector").expect("IO::Event::Selector is defined")
});

/// Resolve the lazily looked-up constants at load (see `uring::init`).
pub fn init(ruby: &Ruby) {
    let _ = ruby.get_inner(&PROCESS_STATUS);
    let _ = ruby.get_inner(&SELECTOR_MODULE);
}

pub fn process_wait(ruby: &Ruby, backend: &impl ChildWait, fiber: Value, pid: i32, flags: i32) -> Result<Value, Error> {
    // A pidfd only reports an exit: a wait that must also see a child stop
    // or continue waits on a helper thread.
    if pid <= 0 || flags & (libc::WUNTRACED | libc::WCONTINUED) != 0 {
        return delegate(ruby, pid, flags);
    }
    loop {
        let status = wait_status(ruby, pid, flags | libc::WNOHANG)?;
        if !status.is_nil() || flags & libc::WNOHANG != 0 {
            return Ok(status);
        }
        match backend.wait_for_change(ruby, fiber, pid, flags)? {
            Change::Changed => continue,
            Change::NoEvent => return Ok(ruby.qnil().as_value()),
            Change::Unsupported => return delegate(ruby, pid, flags),
        }
    }
}

/// `Process::Status.wait(pid, flags)`: a Process::Status, or nil with WNOHANG
/// (which never enters the fiber scheduler).
fn wait_status(ruby: &Ruby, pid: i32, flags: i32) -> Result<Value, Error> {
    ruby.get_inner(&PROCESS_STATUS).funcall("wait", (pid, flags))
}

/// `IO::Event::Selector.process_wait(pid, flags)`: waits on a helper thread.
fn delegate(ruby: &Ruby, pid: i32, flags: i32) -> Result<Value, Error> {
    ruby.get_inner(&SELECTOR_MODULE).funcall("process_wait", (pid, flags))
}
