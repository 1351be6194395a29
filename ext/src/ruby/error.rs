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

/// The class name of `value`, for error messages.
pub fn class_name(value: Value) -> String {
    // SAFETY: reads the class name of a live object while holding the GVL.
    unsafe { value.classname() }.into_owned()
}
