//! Descriptors of IO objects.

use std::os::fd::RawFd;

use magnus::{prelude::*, rb_sys::AsRawValue, Error, Integer, RFile, Ruby, Value};

use super::error::{io_error, type_error};

/// The descriptor behind `io`: an `IO` (raising `IOError` when it is closed),
/// anything with `to_io` (a Tempfile), or a raw Integer descriptor.
#[inline]
pub fn descriptor(ruby: &Ruby, io: Value) -> Result<RawFd, Error> {
    if RFile::from_value(io).is_some() {
        if let Some(fd) = open_fd(io) {
            return Ok(fd);
        }
    }
    other_descriptor(ruby, io)
}

/// An open IO's descriptor, read directly; `None` when closed (or not yet
/// initialised).
#[inline(always)]
fn open_fd(io: Value) -> Option<RawFd> {
    // SAFETY: `io` is a T_FILE (checked by the callers), so it is an RFile;
    // its `fptr` is null only before initialisation, and a closed IO has a
    // negative `fd`.
    let fd = unsafe {
        let fptr = (*(io.as_raw() as *const rb_sys::RFile)).fptr;
        if fptr.is_null() {
            -1
        } else {
            (*fptr).fd
        }
    };
    (fd >= 0).then_some(fd)
}

/// `descriptor`'s other cases: a closed IO (raising), an Integer, `to_io`.
#[cold]
#[inline(never)]
fn other_descriptor(ruby: &Ruby, io: Value) -> Result<RawFd, Error> {
    if RFile::from_value(io).is_some() {
        return open_descriptor(io);
    }
    if let Some(int) = Integer::from_value(io) {
        let fd = int.to_i32()?;
        if fd < 0 {
            return Err(io_error(ruby, format!("invalid descriptor {fd}")));
        }
        return Ok(fd);
    }
    if io.respond_to("to_io", false)? {
        let inner: Value = io.funcall("to_io", ())?;
        if RFile::from_value(inner).is_some() {
            return open_descriptor(inner);
        }
    }
    Err(type_error(
        ruby,
        format!("expected an IO or an Integer descriptor, got {}", crate::ruby::error::class_name(io)),
    ))
}

fn open_descriptor(io: Value) -> Result<RawFd, Error> {
    if let Some(fd) = open_fd(io) {
        return Ok(fd);
    }
    // Closed or not initialised: Ruby's own check raises.
    let mut fd = -1;
    magnus::rb_sys::protect(|| {
        // SAFETY: `io` is a T_FILE; a closed stream raises IOError, caught by protect.
        fd = unsafe { rb_sys::rb_io_descriptor(io.as_raw()) };
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    Ok(fd)
}
