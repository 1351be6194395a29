//! Running a blocking call without the GVL.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

struct NogvlCall<F, R> {
    func: Option<F>,
    result: Option<std::thread::Result<R>>,
}

/// Run `func` without the GVL. `wake_fd` is an eventfd that the unblock
/// function writes to, which must make `func` return promptly (`Thread#raise`,
/// signals, `Thread#kill`). Returns `None` when Ruby had an interrupt pending
/// and did not run `func` at all (`RB_NOGVL_INTR_FAIL`); the interrupt is then
/// delivered at the next safepoint, after our frames are gone.
pub fn without_gvl<F, R>(wake_fd: RawFd, func: F) -> Option<R>
where
    F: FnOnce() -> R,
{
    let mut call = NogvlCall { func: Some(func), result: None };
    call_nogvl(&mut call, wake_fd);
    match call.result? {
        Ok(value) => Some(value),
        // Re-raise on our side of the C frames; magnus turns it into a Ruby fatal.
        Err(panic) => resume_unwind(panic),
    }
}

fn call_nogvl<F: FnOnce() -> R, R>(call: &mut NogvlCall<F, R>, wake_fd: RawFd) {
    let data = (call as *mut NogvlCall<F, R>).cast::<c_void>();
    let wake = wake_fd as isize as *mut c_void;
    // INTR_FAIL: Ruby runs no interrupt (trap handler, Thread#raise) inside
    // this call; it returns without blocking if one is pending. UBF_ASYNC_SAFE:
    // `unblock` is one write(2), so Ruby calls it directly instead of starting
    // a helper thread that hands the GVL around (and runs trap handlers while
    // joining it, inside our frames).
    let flags = (rb_sys::RB_NOGVL_INTR_FAIL | rb_sys::RB_NOGVL_UBF_ASYNC_SAFE) as i32;
    // SAFETY: `data` points at `call`, alive for the whole call; the trampoline
    // matches `F`/`R`; the unblock function only writes to an eventfd that the
    // selector keeps open while it is blocked (close is refused meanwhile).
    unsafe {
        rb_sys::rb_nogvl(Some(trampoline::<F, R>), data, Some(unblock), wake, flags);
    }
}

extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: `data` is the `NogvlCall<F, R>` passed by `call_nogvl`, exclusively ours here.
    let call = unsafe { &mut *data.cast::<NogvlCall<F, R>>() };
    if let Some(func) = call.func.take() {
        call.result = Some(catch_unwind(AssertUnwindSafe(func)));
    }
    std::ptr::null_mut()
}

/// Called by Ruby from another thread or a signal context: async-signal-safe,
/// allocation-free, cannot panic.
extern "C" fn unblock(data: *mut c_void) {
    crate::selector::interrupt::signal_fd(data as isize as RawFd);
}
