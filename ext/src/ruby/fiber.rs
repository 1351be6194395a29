//! Fiber switches for real `Fiber`s and for duck-typed objects that respond to
//! `transfer` / `alive?` / `raise`. Every call goes through `protect`, so a
//! raise, throw or `Fiber#kill` comes back as `Err` and never unwinds through
//! Rust frames.

use std::sync::atomic::{AtomicPtr, Ordering};

use magnus::{
    prelude::*,
    rb_sys::{AsRawValue, FromRawValue},
    Error, Ruby, Value,
};
use rb_sys::stable_api::StableApiDefinition;

/// Fiber's data type, learned from the current fiber at load: an object of
/// that exact type is a Fiber (subclasses and singleton classes included),
/// and a non-null data pointer means it was initialised.
static FIBER_TYPE: AtomicPtr<rb_sys::rb_data_type_t> = AtomicPtr::new(std::ptr::null_mut());

/// Remember Fiber's data type (once, at load).
pub fn init(_ruby: &Ruby) {
    let api = rb_sys::stable_api::get_default();
    // SAFETY: the current fiber is a typed T_DATA (checked before reading its
    // type); we hold the GVL.
    unsafe {
        let current = rb_sys::rb_fiber_current();
        if api.builtin_type(current) == rb_sys::ruby_value_type::RUBY_T_DATA && api.rtypeddata_p(current) {
            FIBER_TYPE.store(api.rtypeddata_type(current).cast_mut(), Ordering::Relaxed);
        }
    }
}

pub fn current(_ruby: &Ruby) -> Value {
    // SAFETY: the current fiber; we hold the GVL.
    unsafe { Value::from_raw(rb_sys::rb_fiber_current()) }
}

/// Whether `value` is a real, initialised `Fiber` (not a duck-typed
/// stand-in, nor `Fiber.allocate`'s empty shell, on which Ruby's fiber
/// functions raise).
#[inline]
fn is_fiber(value: Value) -> bool {
    let raw = value.as_raw();
    let api = rb_sys::stable_api::get_default();
    let fiber_type = FIBER_TYPE.load(Ordering::Relaxed);
    // SAFETY: each accessor only after the checks it needs (a heap object,
    // a T_DATA, typed).
    unsafe {
        !fiber_type.is_null()
            && !api.special_const_p(raw)
            && api.builtin_type(raw) == rb_sys::ruby_value_type::RUBY_T_DATA
            && api.rtypeddata_p(raw)
            && std::ptr::eq(api.rtypeddata_type(raw), fiber_type)
            && !api.rtypeddata_get_data(raw).is_null()
    }
}

/// Switch to `fiber`, returning what we are later transferred back with.
pub fn transfer(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    if !is_fiber(fiber) {
        return fiber.funcall("transfer", args);
    }
    transfer_fiber(fiber, args)
}

/// Switch to `fiber` (without arguments) if it is alive, as `is_alive` and
/// `transfer` would, with one check of what it is. False when it is dead.
pub fn transfer_if_alive(fiber: Value) -> Result<bool, Error> {
    if !is_fiber(fiber) {
        return Ok(is_alive(fiber)? && transfer(fiber, &[]).map(|_| true)?);
    }
    // SAFETY: `fiber` is a Fiber; rb_fiber_alive_p only reads its state.
    if unsafe { rb_sys::rb_fiber_alive_p(fiber.as_raw()) } == rb_sys::Qfalse as rb_sys::VALUE {
        return Ok(false);
    }
    transfer_fiber(fiber, &[]).map(|_| true)
}

/// `transfer` for a real Fiber (`is_fiber`).
#[inline(always)]
fn transfer_fiber(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    let argc = i32::try_from(args.len()).unwrap_or(i32::MAX);
    let argv = args.as_ptr().cast::<rb_sys::VALUE>();
    // SAFETY: `fiber` is a Fiber (the caller checked); `args` outlives the
    // call (Value is a transparent VALUE); protect catches whatever is
    // raised or thrown into us while we are switched out.
    magnus::rb_sys::protect(|| unsafe { rb_sys::rb_fiber_transfer(fiber.as_raw(), argc, argv) })
        // SAFETY: what the fiber was transferred back with: a live VALUE.
        .map(|raw| unsafe { Value::from_raw(raw) })
}

pub fn is_alive(fiber: Value) -> Result<bool, Error> {
    if is_fiber(fiber) {
        // SAFETY: `fiber` is a Fiber; rb_fiber_alive_p only reads its state.
        return Ok(unsafe { rb_sys::rb_fiber_alive_p(fiber.as_raw()) } != rb_sys::Qfalse as rb_sys::VALUE);
    }
    fiber.funcall::<_, _, Value>("alive?", ()).map(|v| v.to_bool())
}

/// `fiber.raise(*args)`: resumes `fiber` with an exception.
pub fn raise(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    fiber.funcall("raise", args)
}

/// A "fiber" argument must at least be able to be switched to.
#[inline]
pub fn check(ruby: &Ruby, fiber: Value) -> Result<Value, Error> {
    if is_fiber(fiber) {
        return Ok(fiber);
    }
    check_duck(ruby, fiber)
}

#[cold]
#[inline(never)]
fn check_duck(ruby: &Ruby, fiber: Value) -> Result<Value, Error> {
    if fiber.respond_to("transfer", false)? {
        Ok(fiber)
    } else {
        Err(super::error::type_error(
            ruby,
            format!("expected a Fiber (or an object responding to transfer), got {}", super::error::class_name(fiber)),
        ))
    }
}
