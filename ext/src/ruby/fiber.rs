//! Fiber switches for real `Fiber`s and for duck-typed objects that respond to
//! `transfer` / `alive?` / `raise`. Every call goes through `protect`, so a
//! raise, throw or `Fiber#kill` comes back as `Err` and never unwinds through
//! Rust frames.

use magnus::{prelude::*, Error, Fiber, Ruby, Value};

pub fn current(ruby: &Ruby) -> Value {
    ruby.fiber_current().as_value()
}

/// Switch to `fiber`, returning what we are later transferred back with.
pub fn transfer(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    match Fiber::from_value(fiber) {
        Some(fiber) => fiber.transfer(args),
        None => fiber.funcall("transfer", args),
    }
}

pub fn is_alive(fiber: Value) -> Result<bool, Error> {
    match Fiber::from_value(fiber) {
        Some(fiber) => Ok(fiber.is_alive()),
        None => fiber.funcall::<_, _, Value>("alive?", ()).map(|v| v.to_bool()),
    }
}

/// `fiber.raise(*args)`: resumes `fiber` with an exception.
pub fn raise(fiber: Value, args: &[Value]) -> Result<Value, Error> {
    fiber.funcall("raise", args)
}

/// A "fiber" argument must at least be able to be switched to.
pub fn check(ruby: &Ruby, fiber: Value) -> Result<Value, Error> {
    if Fiber::from_value(fiber).is_some() || fiber.respond_to("transfer", false)? {
        Ok(fiber)
    } else {
        Err(super::error::type_error(
            ruby,
            format!("expected a Fiber (or an object responding to transfer), got {}", super::error::class_name(fiber)),
        ))
    }
}
