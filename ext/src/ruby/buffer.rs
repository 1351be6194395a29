//! `IO::Buffer` memory for the duration of one I/O call.

use std::ffi::c_void;

use magnus::{prelude::*, rb_sys::AsRawValue, Error, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// The kernel writes into the buffer (read, pread).
    Write,
    /// The kernel reads from the buffer (write, pwrite).
    Read,
}

/// A buffer's bytes, valid while the buffer is locked and marked.
#[derive(Clone, Copy)]
pub struct Bytes {
    pub base: *mut u8,
    pub size: usize,
}

/// Lock `buffer` (unless its owner already has: Ruby locks the buffers it lends
/// to scheduler hooks) so it cannot be freed or resized while the kernel may
/// use it, run `f` with its bytes, and unlock on every return route.
/// A non-buffer raises `TypeError`; a read-only buffer given for reading into
/// raises too (both from Ruby's own checks).
pub fn with_locked<R>(buffer: Value, access: Access, f: impl FnOnce(Bytes) -> Result<R, Error>) -> Result<R, Error> {
    let bytes = bytes(buffer, access)?;
    let already_locked: bool = buffer.funcall("locked?", ())?;
    if !already_locked {
        // SAFETY: `buffer` is a live IO::Buffer (`bytes` checked); protect catches raises.
        magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_lock(buffer.as_raw()) })?;
    }
    let result = f(bytes);
    if !already_locked {
        // SAFETY: as above; we locked it, so it is ours to unlock.
        let _ = magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_unlock(buffer.as_raw()) });
    }
    result
}

fn bytes(buffer: Value, access: Access) -> Result<Bytes, Error> {
    let mut base: *mut c_void = std::ptr::null_mut();
    let mut size: rb_sys::size_t = 0;
    magnus::rb_sys::protect(|| {
        let raw = buffer.as_raw();
        // SAFETY: the out-pointers are locals; Ruby checks the type (TypeError)
        // and access (read-only, freed) and raises, which protect catches.
        unsafe {
            match access {
                Access::Write => rb_sys::rb_io_buffer_get_bytes_for_writing(raw, &mut base, &mut size),
                Access::Read => {
                    let out = (&mut base as *mut *mut c_void).cast::<*const c_void>();
                    rb_sys::rb_io_buffer_get_bytes_for_reading(raw, out, &mut size)
                }
            }
        }
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    Ok(Bytes { base: base.cast(), size: size as usize })
}
