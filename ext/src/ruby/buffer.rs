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
    // Lock before taking the address: `take` may run Ruby code (a trap
    // handler, another thread) that frees or resizes an unlocked buffer.
    take(buffer)?;
    let result = bytes(buffer, access).and_then(f);
    let given_back = give_back(buffer);
    let result = result?;
    given_back?;
    Ok(result)
}

fn take(buffer: Value) -> Result<(), Error> {
    // SAFETY: reads an exported class constant; we hold the GVL.
    let buffer_class = unsafe { rb_sys::rb_cIOBuffer };
    // SAFETY: a class test on a live VALUE; runs no Ruby code.
    if unsafe { rb_sys::rb_obj_is_kind_of(buffer.as_raw(), buffer_class) } == rb_sys::Qfalse as rb_sys::VALUE {
        let ruby = magnus::Ruby::get_with(buffer);
        return Err(super::error::type_error(
            &ruby,
            format!("expected an IO::Buffer, got {}", super::error::class_name(buffer)),
        ));
    }
    let key = buffer.as_raw();
    {
        let mut map = lent();
        let map = map.get_or_insert_with(HashMap::new);
        if let Some(lent) = map.get_mut(&key) {
            lent.holders += 1;
            return Ok(());
        }
        // Claimed before asking Ruby anything: whoever lends the buffer
        // while the question below runs other Ruby code only counts itself.
        map.insert(key, Lent { buffer: buffer.into(), holders: 1, locked_by_us: false });
    }
    let locked = lock_unless_locked(buffer);
    let mut map = lent();
    let map = map.get_or_insert_with(HashMap::new);
    match locked {
        Ok(locked_by_us) => {
            if let Some(lent) = map.get_mut(&key) {
                lent.locked_by_us = locked_by_us;
            }
            Ok(())
        }
        Err(error) => {
            // Not a buffer (TypeError), or something else went wrong: undo the claim.
            if let Some(lent) = map.get_mut(&key) {
                lent.holders -= 1;
                if lent.holders == 0 {
                    map.remove(&key);
                }
            }
            Err(error)
        }
    }
}

/// Lock `buffer` unless its owner already has. True if we locked it.
fn lock_unless_locked(buffer: Value) -> Result<bool, Error> {
    if buffer.funcall::<_, _, bool>(*LOCKED_P, ())? {
        return Ok(false);
    }
    // SAFETY: `buffer` answered `locked?`, so it is an IO::Buffer; protect
    // catches the raise if Ruby code run by the call above locked it since.
    match magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_lock(buffer.as_raw()) }) {
        Ok(_) => Ok(true),
        Err(_) if buffer.funcall::<_, _, bool>(*LOCKED_P, ())? => Ok(false),
        Err(error) => Err(error),
    }
}

/// Keep `buffer` lent for good: the kernel may still use it after its call
/// gave up on the op (the selector was torn down with it in flight), so it
/// must stay locked (and marked) rather than be freed or resized.
pub fn keep_lent_forever(buffer: Value) {
    if let Some(lent) = lent().get_or_insert_with(HashMap::new).get_mut(&buffer.as_raw()) {
        lent.holders += 1;
    }
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
