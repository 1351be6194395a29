//! `IO::Buffer` memory for the duration of one I/O call.
//!
//! Ruby's buffer lock is a flag, not a count, so two of our calls lending the
//! same buffer (two fibers reading into it, or two selectors on two threads)
//! must not each lock and unlock it: the first to finish would unlock it
//! while the kernel still uses it for the other, and `free`/`resize` would
//! then succeed. A call that finds the buffer unlocked locks it and holds it
//! alone, with no bookkeeping (the usual case). A call that finds it locked
//! joins a process-wide table that counts such holders; the call that
//! locked it, leaving while others hold it, hands them the unlock, and the
//! last of them unlocks. A buffer its owner locked (Ruby locks the buffers
//! it lends to scheduler hooks, and unlocks them itself) is only counted,
//! never unlocked by us, and its bytes are used across a fiber switch only
//! if Ruby code cannot unlock it meanwhile (`Loan::is_steady`). An entry also keeps its buffer alive (it is marked
//! through `pins::Root`), so the table never names a freed object, even when
//! a call's frame is never unwound (its fiber is never resumed): that buffer
//! then stays locked, which is a leak, never a use after free.

use rb_sys::stable_api::StableApiDefinition;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
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

/// Keys are object addresses: aligned, distinct, no need for SipHash.
#[derive(Default, Clone, Copy)]
struct AddressHash(u64);

impl Hasher for AddressHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        // Heap slots are 40 bytes apart: multiply to spread them over the table.
        self.0 = (value >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type LentMap = HashMap<rb_sys::VALUE, Lent, BuildHasherDefault<AddressHash>>;

static LENT: Mutex<Option<LentMap>> = Mutex::new(None);
/// The number of entries in `LENT`, readable without the lock.
static ENTRIES: AtomicUsize = AtomicUsize::new(0);
static LOCKED_P: LazyId = LazyId::new("locked?");

/// Intern the method names now, at load (see `uring::init`).
pub fn init() {
    let _ = *LOCKED_P;
}

fn lent() -> MutexGuard<'static, Option<LentMap>> {
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

/// One call's loan of a buffer (see `with_lent`).
pub struct Loan {
    buffer: Value,
    /// The buffer a slice was cut from, lent too.
    root: Option<Value>,
    access: BufferAccess,
    bytes: Bytes,
    steady: bool,
}

impl Loan {
    pub fn bytes(&self) -> Bytes {
        self.bytes
    }

    /// Whether the bytes stay valid whatever runs, fiber switches included,
    /// until the loan ends: the lock is ours (we locked it, or another of
    /// our calls did and the last of us unlocks). A buffer locked by its
    /// owner is not steady: a `locked { }` block in another fiber can end,
    /// and a scheduler hook's buffer (locked by the C code that made it) can
    /// be handed to another fiber and outlive the hook, which then frees it;
    /// either way the buffer can be freed or resized while our fiber is
    /// switched out. Its bytes must never be held across a switch; see
    /// `refresh`.
    pub fn is_steady(&self) -> bool {
        self.steady
    }

    /// The bytes as they are now, for a loan that is not steady, before each
    /// use: whatever ran since may have unlocked, resized or freed the buffer.
    /// If its owner has let go, we lock it now (and the loan is steady from
    /// then on). Ruby's checked accessors raise for a buffer that can no
    /// longer be used; a freed one has no bytes left.
    pub fn refresh(&mut self) -> Result<Bytes, Error> {
        if self.steady {
            return Ok(self.bytes);
        }
        let mut steady = true;
        for lent_buffer in std::iter::once(self.buffer).chain(self.root) {
            steady &= relock(lent_buffer)?;
        }
        let fresh = bytes(self.buffer, self.access)?;
        if fresh.base.is_null() {
            let ruby = magnus::Ruby::get_with(self.buffer);
            return Err(super::error::io_error(&ruby, "the buffer was freed while the call was using it"));
        }
        self.bytes = fresh;
        self.steady = steady;
        Ok(self.bytes)
    }
}

/// Lend `buffer` for one I/O call: it cannot be freed or resized until `f`
/// and every other call holding it have returned, unless its owner locked
/// it and lets go meanwhile (`Loan::is_steady`). A non-buffer raises
/// `TypeError`; a read-only buffer given to fill, or a freed one, raises
/// too (Ruby's own checks).
pub fn with_lent<R>(
    buffer: Value,
    access: BufferAccess,
    f: impl FnOnce(&mut Loan) -> Result<R, Error>,
) -> Result<R, Error> {
    if let Some((bytes, lease)) = take_plain(buffer, access) {
        let steady = match lease {
            Lease::Locked => true,
            Lease::Joined => holds_lock(buffer),
        };
        let result = f(&mut Loan { buffer, root: None, access, bytes, steady });
        give_back_plain(buffer, lease);
        return result;
    }
    // Lock before taking the address: `take` may run Ruby code (a trap
    // handler, another thread) that frees or resizes an unlocked buffer.
    take(buffer)?;
    // A slice's memory belongs to the buffer it was cut from, which can be
    // freed or resized whatever the slice's own lock says: lend that too.
    let root = slice_root(buffer);
    if let Some(root) = root {
        if let Err(error) = take(root) {
            let _ = give_back(buffer);
            return Err(error);
        }
    }
    let steady = std::iter::once(buffer).chain(root).all(holds_lock);
    let lend = |bytes| f(&mut Loan { buffer, root, access, bytes, steady });
    let result = match read_bytes(buffer, access) {
        Some(bytes) => lend(bytes),
        None => bytes(buffer, access).and_then(|checked| {
            if let Some(direct) = unchecked_read_bytes(buffer, access) {
                Checks::record(Checks::BYTES, (direct.base, direct.size) == (checked.base, checked.size));
            }
            lend(checked)
        }),
    };
    let root_given_back = root.map_or(Ok(()), give_back);
    let given_back = give_back(buffer).and(root_given_back);
    let result = result?;
    given_back?;
    Ok(result)
}

/// How `take_plain` lent a buffer.
#[derive(Clone, Copy)]
enum Lease {
    /// It was unlocked and we locked it, with no table entry: the usual case,
    /// one call per buffer. Whoever lends it meanwhile finds it locked and
    /// joins through the table; leaving, we then hand them the unlock.
    Locked,
    /// It was locked already (by another of our calls, or by its owner): we
    /// counted ourselves in its table entry.
    Joined,
}

/// The common case, lent without running any Ruby code: a buffer whose
/// flags can be read directly, with memory of its own (no source object,
/// so no slice root), usable for `access`. Returns its bytes and how it
/// was lent; `None` (nothing done) sends the caller to the general path.
fn take_plain(buffer: Value, access: BufferAccess) -> Option<(Bytes, Lease)> {
    if !Checks::passed() {
        return None;
    }
    let head = head(buffer)?;
    // SAFETY: `head` returns a pointer only into a live IO::Buffer's data;
    // nothing below runs Ruby code, so the buffer cannot change meanwhile.
    let head = unsafe { &mut *head };
    let plain = !head.base.is_null()
        && head.source == rb_sys::Qnil as rb_sys::VALUE
        && (access == BufferAccess::Drain || head.flags & READONLY_FLAG == 0);
    if !plain {
        return None;
    }
    let bytes = Bytes { base: head.base.cast(), size: head.size };
    if head.set_locked(true) {
        return Some((bytes, Lease::Locked));
    }
    join(buffer);
    Some((bytes, Lease::Joined))
}

/// Count one more holder of `buffer` in the table (made at 0 holders, not
/// ours to unlock, if it had no entry).
fn join(buffer: Value) {
    let mut map = lent();
    let map = map.get_or_insert_with(LentMap::default);
    map.entry(buffer.as_raw()).or_insert(Lent { buffer: buffer.into(), holders: 0, locked_by_us: false }).holders += 1;
    ENTRIES.store(map.len(), Ordering::Relaxed);
}

/// End a `take_plain` lease.
fn give_back_plain(buffer: Value, lease: Lease) {
    let key = buffer.as_raw();
    let unlock = match lease {
        // Nobody joined anything: nothing to hand over (the count is only
        // changed with the GVL held, as this runs).
        Lease::Locked if ENTRIES.load(Ordering::Relaxed) == 0 => true,
        Lease::Locked => {
            let mut map = lent();
            match map.as_mut().and_then(|map| map.get_mut(&key)) {
                // Others joined: the last of them unlocks.
                Some(lent) => {
                    lent.locked_by_us = true;
                    false
                }
                None => true,
            }
        }
        Lease::Joined => leave(key),
    };
    if unlock {
        if let Some(head) = head(buffer) {
            // SAFETY: `head` points into a live IO::Buffer's data, whose reads
            // `take_plain` relied on; no Ruby code runs meanwhile.
            unsafe { (*head).set_locked(false) };
        }
    }
}

/// Whether the lock on `buffer` is ours: its table entry says one of our
/// calls locked it (and the last of them unlocks).
fn holds_lock(buffer: Value) -> bool {
    lent().as_ref().and_then(|map| map.get(&buffer.as_raw())).is_some_and(|lent| lent.locked_by_us)
}

/// For a loan whose lock was its owner's: take the lock if the owner has
/// let go since. True if the lock is now ours.
fn relock(buffer: Value) -> Result<bool, Error> {
    if holds_lock(buffer) {
        return Ok(true);
    }
    let locked_by_us = lock_unless_locked(buffer)?;
    if locked_by_us {
        // Our holder's entry (every loan that is not steady has one) now
        // owes the unlock; without one the buffer stays locked: a leak.
        if let Some(lent) = lent().as_mut().and_then(|map| map.get_mut(&buffer.as_raw())) {
            lent.locked_by_us = true;
        }
    }
    Ok(locked_by_us)
}

/// Count one holder of the buffer at `key` out; true if it was the last and
/// the buffer is ours to unlock.
fn leave(key: rb_sys::VALUE) -> bool {
    let mut map = lent();
    let Some(map) = map.as_mut() else {
        return false;
    };
    match map.entry(key) {
        Entry::Occupied(mut lent) if lent.get().holders > 1 => {
            lent.get_mut().holders -= 1;
            false
        }
        Entry::Occupied(lent) => {
            let locked_by_us = lent.remove().locked_by_us;
            ENTRIES.store(map.len(), Ordering::Relaxed);
            locked_by_us
        }
        Entry::Vacant(_) => false,
    }
}

fn take(buffer: Value) -> Result<(), Error> {
    if read_locked(buffer).is_none() && !is_buffer(buffer) {
        let ruby = magnus::Ruby::get_with(buffer);
        return Err(super::error::type_error(
            &ruby,
            format!("expected an IO::Buffer, got {}", super::error::class_name(buffer)),
        ));
    }
    let key = buffer.as_raw();
    {
        // Claimed before asking Ruby anything: whoever lends the buffer
        // while the question below runs other Ruby code (a trap handler)
        // joins this entry, and asks (and locks) for itself.
        let mut map = lent();
        let map = map.get_or_insert_with(LentMap::default);
        map.entry(key).or_insert(Lent { buffer: buffer.into(), holders: 0, locked_by_us: false }).holders += 1;
        ENTRIES.store(map.len(), Ordering::Relaxed);
    }
    // Asked even when the buffer was lent already: the holder that made the
    // entry may still be asking (its question ran us), with the buffer not
    // locked yet.
    let locked = lock_unless_locked(buffer);
    let mut map = lent();
    let map = map.get_or_insert_with(LentMap::default);
    match locked {
        Ok(locked_by_us) => {
            if let Some(lent) = map.get_mut(&key) {
                // `|=`: a call that locked it meanwhile (from a trap handler
                // run by the question) may have handed us its unlock.
                lent.locked_by_us |= locked_by_us;
            }
            Ok(())
        }
        Err(error) => {
            // Not a buffer (TypeError), or something else went wrong: undo the claim.
            if let Some(lent) = map.get_mut(&key) {
                lent.holders -= 1;
                if lent.holders == 0 {
                    map.remove(&key);
                    ENTRIES.store(map.len(), Ordering::Relaxed);
                }
            }
            Err(error)
        }
    }
}

/// The start of Ruby's private `struct rb_io_buffer` (3.1 to 3.4, on Linux).
/// Used only once the reads have agreed with Ruby's own answers on real
/// buffers (`Checks`): the lock flag both unlocked and locked, and the
/// bytes. The one write is the lock flag (`set_locked`).
#[repr(C)]
struct BufferHead {
    base: *mut c_void,
    size: usize,
    flags: u32,
    source: rb_sys::VALUE,
}

impl BufferHead {
    /// Lock or unlock as `rb_io_buffer_lock`/`_unlock` do to a buffer in the
    /// other state (they only check its type, then flip this flag). False,
    /// with nothing done, if it was so already.
    fn set_locked(&mut self, locked: bool) -> bool {
        if (self.flags & LOCKED_FLAG != 0) == locked {
            return false;
        }
        self.flags ^= LOCKED_FLAG;
        true
    }
}

/// `BufferHead::set_locked` on `buffer`, once the direct reads are known to
/// work here; `None` (nothing done) sends the caller to Ruby's own calls.
fn set_locked(buffer: Value, locked: bool) -> Option<bool> {
    if !Checks::passed() {
        return None;
    }
    // SAFETY: `head` returns a pointer only into a live IO::Buffer's data;
    // no Ruby code runs while the reference lives.
    head(buffer).map(|head| unsafe { (*head).set_locked(locked) })
}

const LOCKED_FLAG: u32 = rb_sys::rb_io_buffer_flags::RB_IO_BUFFER_LOCKED as u32;
const READONLY_FLAG: u32 = rb_sys::rb_io_buffer_flags::RB_IO_BUFFER_READONLY as u32;

/// IO::Buffer's data type, taken from the first buffer lent.
static BUFFER_TYPE: AtomicPtr<rb_sys::rb_data_type_t> = AtomicPtr::new(std::ptr::null_mut());

/// What the direct reads have been checked against (Ruby's `locked?` and
/// checked accessors) on the buffers lent so far: bits of `Checks`.
static CHECKED: AtomicU8 = AtomicU8::new(0);

struct Checks;

impl Checks {
    const UNLOCKED: u8 = 1;
    const LOCKED: u8 = 2;
    const BYTES: u8 = 4;
    const ALL: u8 = 7;
    /// The probe ran (see `check_on_a_probe`).
    const PROBED: u8 = 64;
    /// A read disagreed with Ruby: never use the direct reads.
    const FAILED: u8 = 128;

    fn passed() -> bool {
        CHECKED.load(Ordering::Relaxed) & !Checks::PROBED == Checks::ALL
    }

    fn record(check: u8, agreed: bool) {
        CHECKED.fetch_or(if agreed { check } else { Checks::FAILED }, Ordering::Relaxed);
    }
}

/// Whether `buffer` is locked, read from its flags without a method call
/// (which would check for interrupts and cost a method lookup), once the
/// read is known to agree with Ruby here.
fn read_locked(buffer: Value) -> Option<bool> {
    if Checks::passed() {
        unchecked_read_locked(buffer)
    } else {
        None
    }
}

fn unchecked_read_locked(buffer: Value) -> Option<bool> {
    // SAFETY: `head` returns a pointer only into a live IO::Buffer's data.
    head(buffer).map(|head| unsafe { (*head).flags } & LOCKED_FLAG != 0)
}

/// The bytes of a lent (locked) buffer with no source object (the buffers
/// Ruby lends to scheduler hooks, and `IO::Buffer.new`'s), read directly;
/// `None` sends the caller to Ruby's own checked accessors.
fn read_bytes(buffer: Value, access: BufferAccess) -> Option<Bytes> {
    if !Checks::passed() {
        return None;
    }
    unchecked_read_bytes(buffer, access)
}

fn unchecked_read_bytes(buffer: Value, access: BufferAccess) -> Option<Bytes> {
    let head = head(buffer)?;
    // SAFETY: as in `read_locked`.
    let head = unsafe { &*head };
    let usable = head.flags & LOCKED_FLAG != 0
        && !head.base.is_null()
        && head.source == rb_sys::Qnil as rb_sys::VALUE
        && (access == BufferAccess::Drain || head.flags & READONLY_FLAG == 0);
    usable.then_some(Bytes { base: head.base.cast(), size: head.size })
}

/// The buffer a slice was cut from (its `source`, when that is an
/// IO::Buffer), once the direct reads are known to work here.
fn slice_root(buffer: Value) -> Option<Value> {
    if !Checks::passed() {
        return None;
    }
    // SAFETY: as in `read_locked`.
    let source = unsafe { (*head(buffer)?).source };
    // SAFETY: the source of a live buffer is a live VALUE (it marks it).
    let source = unsafe { <Value as magnus::rb_sys::FromRawValue>::from_raw(source) };
    head(source).map(|_| source)
}

fn head(buffer: Value) -> Option<*mut BufferHead> {
    let expected = BUFFER_TYPE.load(Ordering::Relaxed);
    if expected.is_null() {
        return None;
    }
    let api = rb_sys::stable_api::get_default();
    let raw = buffer.as_raw();
    // SAFETY: as `receiver::This::exact`: each accessor only after the checks
    // it needs; an object of IO::Buffer's exact type wraps a `rb_io_buffer`.
    unsafe {
        if api.special_const_p(raw)
            || api.builtin_type(raw) != rb_sys::ruby_value_type::RUBY_T_DATA
            || !api.rtypeddata_p(raw)
            || !std::ptr::eq(api.rtypeddata_type(raw), expected)
        {
            return None;
        }
        let head = api.rtypeddata_get_data(raw).cast::<BufferHead>();
        (!head.is_null()).then_some(head)
    }
}

/// Lock `buffer` unless its owner already has. True if we locked it.
fn lock_unless_locked(buffer: Value) -> Result<bool, Error> {
    if let Some(locked_by_us) = set_locked(buffer, true) {
        return Ok(locked_by_us);
    }
    // Ruby's answers, which also check the direct reads for later calls.
    if CHECKED.load(Ordering::Relaxed) == 0 {
        CHECKED.fetch_or(Checks::PROBED, Ordering::Relaxed);
        check_on_a_probe()?;
        if let Some(locked_by_us) = set_locked(buffer, true) {
            return Ok(locked_by_us);
        }
    }
    learn_type(buffer);
    let locked: bool = buffer.funcall(*LOCKED_P, ())?;
    check_read(buffer, locked);
    if locked {
        return Ok(false);
    }
    // SAFETY: `buffer` answered `locked?`, so it is an IO::Buffer; protect
    // catches the raise if Ruby code run by the call above locked it since.
    let locked_now = magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_lock(buffer.as_raw()) });
    match locked_now {
        Ok(_) => {
            check_read(buffer, true);
            Ok(true)
        }
        Err(_) if buffer.funcall::<_, _, bool>(*LOCKED_P, ())? => Ok(false),
        Err(error) => Err(error),
    }
}

/// Check the direct reads once on a buffer of our own (made through the C
/// API, which, unlike `IO::Buffer.new` on 3.1, prints no experimental
/// warning), so that they are checked both unlocked and locked even when
/// every buffer lent to us comes locked (as Ruby's hook buffers do).
fn check_on_a_probe() -> Result<(), Error> {
    let internal = rb_sys::rb_io_buffer_flags::RB_IO_BUFFER_INTERNAL;
    // SAFETY: a fresh 16-byte internal buffer; we hold the GVL; protect
    // catches an allocation failure.
    let probe = magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_new(std::ptr::null_mut(), 16, internal) })?;
    // SAFETY: a live VALUE just made.
    let probe = unsafe { <Value as magnus::rb_sys::FromRawValue>::from_raw(probe) };
    learn_type(probe);
    let unlocked: bool = probe.funcall(*LOCKED_P, ())?;
    check_read(probe, unlocked);
    // SAFETY: an unlocked buffer of our own; protect catches any surprise.
    magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_lock(probe.as_raw()) })?;
    let locked: bool = probe.funcall(*LOCKED_P, ())?;
    check_read(probe, locked);
    for access in [BufferAccess::Fill, BufferAccess::Drain] {
        if let (Some(direct), Ok(checked)) = (unchecked_read_bytes(probe, access), bytes(probe, access)) {
            Checks::record(Checks::BYTES, (direct.base, direct.size) == (checked.base, checked.size));
        }
    }
    // SAFETY: locked above; then freed (it was never lent to anyone).
    magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_unlock(probe.as_raw()) })?;
    // SAFETY: as above.
    magnus::rb_sys::protect(|| unsafe { rb_sys::rb_io_buffer_free(probe.as_raw()) })?;
    Ok(())
}

/// Take IO::Buffer's data type from the first buffer seen.
fn learn_type(buffer: Value) {
    if !BUFFER_TYPE.load(Ordering::Relaxed).is_null() || !is_buffer(buffer) {
        return;
    }
    let api = rb_sys::stable_api::get_default();
    let raw = buffer.as_raw();
    // SAFETY: an IO::Buffer instance is a typed T_DATA (checked before reading).
    unsafe {
        if api.builtin_type(raw) == rb_sys::ruby_value_type::RUBY_T_DATA && api.rtypeddata_p(raw) {
            BUFFER_TYPE.store(api.rtypeddata_type(raw).cast_mut(), Ordering::Relaxed);
        }
    }
}

/// Record whether the direct flag read agrees with Ruby's `locked?`.
fn check_read(buffer: Value, ruby_says: bool) {
    if let Some(read) = unchecked_read_locked(buffer) {
        Checks::record(if ruby_says { Checks::LOCKED } else { Checks::UNLOCKED }, read == ruby_says);
    }
}

fn is_buffer(value: Value) -> bool {
    // SAFETY: reads an exported class constant; we hold the GVL.
    let buffer_class = unsafe { rb_sys::rb_cIOBuffer };
    // SAFETY: a class test on a live VALUE; runs no Ruby code.
    unsafe { rb_sys::rb_obj_is_kind_of(value.as_raw(), buffer_class) != rb_sys::Qfalse as rb_sys::VALUE }
}

/// Keep `buffer` lent for good: the kernel may still use it after its call
/// gave up on the op (the selector was torn down with it in flight), so it
/// must stay locked (and marked) rather than be freed or resized.
pub fn keep_lent_forever(buffer: Value) {
    // A slice's memory is its root's: that stays lent too.
    for lent_buffer in std::iter::once(buffer).chain(slice_root(buffer)) {
        join(lent_buffer);
    }
}

fn give_back(buffer: Value) -> Result<(), Error> {
    let key = buffer.as_raw();
    if leave(key) && set_locked(buffer, false) != Some(true) {
        // SAFETY: as in `take`; we locked it, so it is ours to unlock (Ruby
        // raises, and protect catches, if somebody unlocked it meanwhile).
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
