//! Fiber switches for real `Fiber`s and for duck-typed objects that respond to
//! `transfer` / `alive?` / `raise`. Every call goes through `protect`, so a
//! raise, throw or `Fiber#kill` comes back as `Err` and never unwinds through
//! Rust frames.

use std::sync::atomic::{AtomicUsize, Ordering};

use magnus::{
    prelude::*,
    rb_sys::{AsRawValue, FromRawValue},
    Error, Ruby, Value,
};
use rb_sys::stable_api::StableApiDefinition;

/// The `Fiber` class, for a class comparison before `rb_obj_is_fiber`.
static FIBER_CLASS: AtomicUsize = AtomicUsize::new(0);

/// Remember the `Fiber` class (once, at load).
pub fn init(ruby: &Ruby) {
    // SAFETY: the class of the current fiber, read with the GVL held; classes
    // are never freed (nor moved: they are pinned by their constant).
    let class = unsafe { rb_sys::rb_obj_class(rb_sys::rb_fiber_current()) };
    let _ = ruby;
    FIBER_CLASS.store(class as usize, Ordering::Relaxed);
}

pub fn current(_ruby: &Ruby) -> Value {
    // SAFETY: the current fiber; we hold the GVL.
    unsafe { Value::from_raw(rb_sys::rb_fiber_current()) }
}

/// Whether `value` is a real `Fiber` (not a duck-typed stand-in).
fn is_fiber(value: Value) -> bool {
    let raw = value.as_raw();
    let api = rb_sys::stable_api::get_default();
    if api.special_const_p(raw) {
        return false;
    }
    // SAFETY: a heap object: its class pointer is readable.
    if unsafe { api.rbasic_class(raw) }.map(|class| class.as_ptr() as usize)
        == Some(FIBER_CLASS.load(Ordering::Relaxed))
    {
        return true;
    }
    // SAFETY: a type test on a live VALUE; runs no Ruby code.
    unsafe { rb_sys::rb_obj_is_fiber(raw) != rb_sys::Qfalse as rb_sys::VALUE }
}

/// Switch to `fiber`, returning what we are later transferred back with.
pub fn transfer(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    if !is_fiber(fiber) {
        return fiber.funcall("transfer", args);
    }
    let argc = i32::try_from(args.len()).unwrap_or(i32::MAX);
    let argv = args.as_ptr().cast::<rb_sys::VALUE>();
    // SAFETY: `fiber` is a Fiber; `args` outlives the call (Value is a
    // transparent VALUE); protect catches whatever is raised or thrown into
    // us while we are switched out.
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
pub fn check(ruby: &Ruby, fiber: Value) -> Result<Value, Error> {
    if is_fiber(fiber) || fiber.respond_to("transfer", false)? {
        Ok(fiber)
    } else {
        Err(super::error::type_error(
            ruby,
            format!("expected a Fiber (or an object responding to transfer), got {}", super::error::class_name(fiber)),
        ))
    }
}
