//! Ruby's per-thread interrupts, as the blocking wait needs them.

use magnus::{prelude::*, rb_sys::AsRawValue, value::LazyId, Error, Ruby};

static PENDING_INTERRUPT_P: LazyId = LazyId::new("pending_interrupt?");

/// Intern the method names now, at load (see `uring::init`).
pub fn init() {
    let _ = *PENDING_INTERRUPT_P;
}

/// Whether an interrupt (`Thread#raise`, `Thread#kill`, a signal's
/// exception) is queued for the current thread, including one that
/// `Thread.handle_interrupt` masks: then the wait must not start, since
/// nothing would end it before the mask is lifted.
pub fn has_pending_interrupt(ruby: &Ruby) -> Result<bool, Error> {
    ruby.class_thread().funcall(*PENDING_INTERRUPT_P, ())
}

/// Whether Ruby has flagged an interrupt for the current thread (a signal
/// for a trap handler, `Thread#raise`, a time-slice switch). A plain read.
pub fn is_interrupted(ruby: &Ruby) -> bool {
    // SAFETY: reads the current thread's interrupt flag; we hold the GVL.
    unsafe { rb_sys::rb_thread_interrupted(ruby.thread_current().as_raw()) != 0 }
}

/// Run Ruby's pending interrupts now: trap handlers, a thread switch, an
/// unmasked `Thread#raise` (which comes back as `Err`).
pub fn check_interrupts() -> Result<(), Error> {
    magnus::rb_sys::protect(|| {
        // SAFETY: called with the GVL held; raises are caught by protect.
        unsafe { rb_sys::rb_thread_check_ints() };
        rb_sys::Qnil as rb_sys::VALUE
    })
    .map(drop)
}
