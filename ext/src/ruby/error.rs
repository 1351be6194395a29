//! The one place Ruby exceptions are built.

use magnus::{prelude::*, rb_sys::FromRawValue, Error, Exception, Ruby, Value};

/// `Errno::*` for `errno`, with `context` as the message.
pub fn syserr(ruby: &Ruby, errno: i32, context: &str) -> Error {
    let message = format!("{context}\0");
    let raised = magnus::rb_sys::protect(|| {
        // SAFETY: `message` is NUL-terminated and outlives the call; we hold the GVL.
        unsafe { rb_sys::rb_syserr_new(errno, message.as_ptr().cast()) }
    });
    match raised {
        // SAFETY: rb_syserr_new returns a live exception object.
        Ok(value) => match Exception::from_value(unsafe { Value::from_raw(value) }) {
            Some(exception) => Error::from(exception),
            None => Error::new(ruby.exception_runtime_error(), context.to_owned()),
        },
        Err(error) => error,
    }
}

/// `Errno::*` for an `io::Error` from a system call.
pub fn from_io(ruby: &Ruby, error: std::io::Error, context: &str) -> Error {
    match error.raw_os_error() {
        Some(errno) => syserr(ruby, errno, context),
        None => Error::new(ruby.exception_runtime_error(), format!("{context}: {error}")),
    }
}

pub fn type_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(ruby.exception_type_error(), message.into())
}

pub fn argument_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(ruby.exception_arg_error(), message.into())
}

pub fn io_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(ruby.exception_io_error(), message.into())
}

pub fn runtime_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(ruby.exception_runtime_error(), message.into())
}

/// The one "selector is closed" error (`IOError`): after `close`, and in a
/// forked child, whose selectors are the parent's.
pub fn selector_closed(ruby: &Ruby, forked: bool) -> Error {
    io_error(ruby, if forked { "selector is closed (forked child)" } else { "selector is closed" })
}

/// One line on `$stderr` through Ruby's `rb_warn` (no Ruby source is built).
pub fn warn(message: &str) {
    let message = format!("{}\0", message.replace('\0', ""));
    // SAFETY: "%s" with one NUL-terminated string that outlives the call; we
    // hold the GVL. rb_warn raises nothing.
    unsafe { rb_sys::rb_warn(c"%s".as_ptr(), message.as_ptr()) };
}

/// Borrow a selector's state for the GC's mark phase. Borrows are never held
/// across anything that can allocate, switch fibers or release the GVL, so
/// this cannot fail; if it ever did, skipping the marks would let the GC free
/// what the kernel or a parked fiber still uses: stop loudly instead.
pub fn borrow_for_mark<T>(cell: &std::cell::RefCell<T>) -> std::cell::Ref<'_, T> {
    match cell.try_borrow() {
        Ok(state) => state,
        Err(_) => {
            eprintln!("io-event-uring: selector state borrowed during GC marking (a bug); aborting");
            std::process::abort();
        }
    }
}

/// The class name of `value`, for error messages.
pub fn class_name(value: Value) -> String {
    // SAFETY: reads the class name of a live object while holding the GVL.
    unsafe { value.classname() }.into_owned()
}
