//! `IO::Buffer` memory for the duration of one I/O call.
//!
//! Ruby's buffer lock is a flag, not a count, so two of our calls lending the
//! same buffer (two fibers reading into it, or two selectors on two threads)
//! must not each lock and unlock it: the first to finish would unlock it
//! while the kernel still uses it for the other, and `free`/`resize` would
//! then succeed. A process-wide table counts the calls that hold each
//! buffer: the first locks it (unless its owner already had: Ruby locks the
//! buffers it lends to scheduler hooks, and unlocks them itself), the last
//! unlocks what the first locked. An entry also keeps its buffer alive (it is
//! marked through `pins::Root`), so the table never names a freed object,
//! even when a call's frame is never unwound (its fiber is never resumed):
//! that buffer then stays locked, which is a leak, never a use after free.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, MutexGuard};

use magnus::{gc::Marker, prelude::*, rb_sys::AsRawValue, value::LazyId, value::Opaque, Error, Value};

/// What the kernel does with the buffer's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BufferAccess {
    /// The kernel fills the buffer (read, pread).
    Fill,
    /// The kernel drains the buffer (write, pwrite).
    Drain,
}

/// A buffer's bytes, valid while the buffer is lent (locked and marked).
#[derive(Clone, Copy)]
pub struct Bytes {
    pub base: *mut u8,
    pub size: usize,
}

struct Lent {
    buffer: Opaque<Value>,
    /// Calls holding the buffer now.
    holders: u32,
    /// Whether the first holder locked it (and so the last must unlock).
    locked_by_us: bool,
}

static LENT: Mutex<Option<HashMap<rb_sys::VALUE, Lent>>> = Mutex::new(None);
static LOCKED_P: LazyId = LazyId::new("locked?");

fn lent() -> MutexGuard<'static, Option<HashMap<rb_sys::VALUE, Lent>>> {
    // Updates are single map operations: a poisoned lock is still consistent.
    LENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Mark every lent buffer (called from the GC root in `pins.rs`).
pub(super) fn mark_lent(marker: &Marker) {
    let Ok(map) = LENT.try_lock() else {
        eprintln!("io-event-uring: the lent-buffer table was locked during GC");
        std::process::abort();
    };
    for lent in map.iter().flat_map(|map| map.values()) {
        marker.mark(lent.buffer);
    }
}

/// Lend `buffer` for one I/O call: it cannot be freed or resized until `f`
/// and every other call holding it have returned. A non-buffer raises
/// `TypeError`; a read-only buffer given to fill, or a freed one, raises
/// too (Ruby's own checks).
pub fn with_lent<R>(
    buffer: Value,
    access: BufferAccess,
    f: impl FnOnce(Bytes) -> Result<R, Error>,
) -> Result<R, Error> {
    let bytes = bytes(buffer, access)?;
    take(buffer)?;
    let result = f(bytes);
    let given_back = give_back(buffer);
    let result = result?;
    given_back?;
    Ok(result)
}

fn take(buffer: Value) -> Result<(), Error> {
    let key = buffer.as_raw();
    if let Some(lent) = lent().get_or_insert_with(HashMap::new).get_mut(&key) {
        lent.holders += 1;
        return Ok(());
    }
    // No Ruby code runs between this check and the insert below (both
    // calls are C methods that cannot switch fibers or threads).
    let already_locked: bool = buffer.funcall(*LOCKED_P, ())?;
    if !already_locked {
        // SAFETY: `buffer` is a live IO::Buffer (`bytes` checked); protect catches raises.
        magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_lock(key) })?;
    }
    let entry = Lent { buffer: buffer.into(), holders: 1, locked_by_us: !already_locked };
    lent().get_or_insert_with(HashMap::new).insert(key, entry);
    Ok(())
}

fn give_back(buffer: Value) -> Result<(), Error> {
    let key = buffer.as_raw();
    let unlock = {
        let mut map = lent();
        let map = map.get_or_insert_with(HashMap::new);
        match map.get_mut(&key) {
            Some(lent) if lent.holders > 1 => {
                lent.holders -= 1;
                false
            }
            Some(_) => map.remove(&key).is_some_and(|lent| lent.locked_by_us),
            None => false,
        }
    };
    if unlock {
        // SAFETY: as in `take`; we locked it, so it is ours to unlock.
        magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_unlock(key) })?;
    }
    Ok(())
}

fn bytes(buffer: Value, access: BufferAccess) -> Result<Bytes, Error> {
    let mut base: *mut c_void = std::ptr::null_mut();
    let mut size: rb_sys::size_t = 0;
    magnus::rb_sys::protect(|| {
        let raw = buffer.as_raw();
        // SAFETY: the out-pointers are locals; Ruby checks the type (TypeError)
        // and access (read-only, freed) and raises, which protect catches.
        unsafe {
            match access {
                BufferAccess::Fill => rb_sys::rb_io_buffer_get_bytes_for_writing(raw, &mut base, &mut size),
                BufferAccess::Drain => {
                    let out = (&mut base as *mut *mut c_void).cast::<*const c_void>();
                    rb_sys::rb_io_buffer_get_bytes_for_reading(raw, out, &mut size)
                }
            }
        }
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    Ok(Bytes { base: base.cast(), size: size as usize })
}
