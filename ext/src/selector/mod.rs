//! What every native selector shares: the `Core`, and the Ruby methods that
//! only need the core, registered once for each backend class.

pub mod core;
pub mod events;
pub mod fd_memo;
pub mod interrupt;
pub mod process_wait;
pub mod ready_queue;
pub mod slab;
pub mod timeout;
pub mod transfer_loop;

use std::os::fd::RawFd;
use std::time::Duration;

use magnus::{
    prelude::*, rb_sys::AsRawValue, typed_data::DataTypeFunctions, Error, Float, Integer, Ruby, TypedData, Value,
};

pub use self::core::Core;
use crate::ruby::error::{class_name, type_error};

/// A native selector: a Ruby object that embeds a `Core`.
pub trait Backend: TypedData + DataTypeFunctions + 'static {
    fn core(&self) -> &Core;
}

/// Define the methods that every backend implements through its `Core` on
/// `$class`, for the backend type `$backend`.
#[macro_export]
macro_rules! define_core_methods {
    ($class:expr, $backend:ty) => {{
        use magnus::{method, Module as _};
        use $crate::selector::shared;
        let class = $class;
        class.define_method("loop", method!(shared::loop_fiber::<$backend>, 0))?;
        class.define_method("transfer", $crate::raw_method!(shared::transfer::<$backend>, 0))?;
        class.define_method("resume", $crate::raw_method!(shared::resume::<$backend>, -1))?;
        class.define_method("yield", $crate::raw_method!(shared::yield_to_loop::<$backend>, 0))?;
        class.define_method("push", $crate::raw_method!(shared::push::<$backend>, 1))?;
        class.define_method("raise", $crate::raw_method!(shared::raise::<$backend>, -1))?;
        class.define_method(
            "ready?",
            shared::ready_p::<$backend> as unsafe extern "C" fn(magnus::Value) -> magnus::Value,
        )?;
        class.define_method("idle_duration", method!(shared::idle_duration::<$backend>, 0))?;
        class.define_method(
            "wakeup",
            shared::wakeup::<$backend> as unsafe extern "C" fn(magnus::Value) -> magnus::Value,
        )?;
    }};
}

/// The shared Ruby methods, generic over the backend.
pub mod shared {
    use magnus::{Error, Ruby, Value};

    use super::Backend;
    use crate::ruby::receiver::This;

    pub fn loop_fiber<T: Backend>(ruby: &Ruby, rb_self: This<T>) -> Value {
        rb_self.core().loop_fiber(ruby)
    }

    pub fn transfer<T: Backend>(ruby: &Ruby, rb_self: This<T>) -> Result<Value, Error> {
        rb_self.core().transfer(ruby)
    }

    fn split_fiber<'a>(ruby: &Ruby, args: &'a [Value]) -> Result<(Value, &'a [Value]), Error> {
        match args.split_first() {
            Some((fiber, rest)) => Ok((*fiber, rest)),
            None => Err(crate::ruby::error::argument_error(ruby, "wrong number of arguments (given 0, expected 1+)")),
        }
    }

    pub fn resume<T: Backend>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<Value, Error> {
        let (fiber, rest) = split_fiber(ruby, args)?;
        rb_self.core().resume(ruby, fiber, rest)
    }

    pub fn yield_to_loop<T: Backend>(ruby: &Ruby, rb_self: This<T>) -> Result<Value, Error> {
        let core = rb_self.core();
        core.resume(ruby, core.loop_fiber(ruby), &[])
    }

    pub fn push<T: Backend>(ruby: &Ruby, rb_self: This<T>, fiber: Value) -> Result<(), Error> {
        rb_self.core().push(ruby, fiber)
    }

    pub fn raise<T: Backend>(ruby: &Ruby, rb_self: This<T>, args: &[Value]) -> Result<Value, Error> {
        let (fiber, rest) = split_fiber(ruby, args)?;
        rb_self.core().raise(ruby, fiber, rest)
    }

    /// `ready?` and `wakeup` are called on every turn of a scheduler's loop
    /// (and `wakeup` from other threads): raw entry points, without magnus's
    /// glue, which cost more than their bodies. Neither body can panic or
    /// raise; the receiver check raises before any Rust value is alive.
    ///
    /// # Safety
    /// Called by Ruby as a method of a `T` class.
    pub unsafe extern "C" fn ready_p<T: Backend>(rb_self: Value) -> Value {
        // SAFETY: no Rust value with a destructor is alive here.
        let this = unsafe { This::<T>::get_or_raise(rb_self) };
        to_bool(this.core().is_ready())
    }

    pub fn idle_duration<T: Backend>(rb_self: This<T>) -> f64 {
        rb_self.core().idle_duration()
    }

    /// # Safety
    /// Called by Ruby as a method of a `T` class.
    pub unsafe extern "C" fn wakeup<T: Backend>(rb_self: Value) -> Value {
        // SAFETY: no Rust value with a destructor is alive here.
        let this = unsafe { This::<T>::get_or_raise(rb_self) };
        to_bool(this.core().wakeup())
    }

    fn to_bool(value: bool) -> Value {
        let raw = if value { rb_sys::Qtrue } else { rb_sys::Qfalse } as rb_sys::VALUE;
        // SAFETY: true and false are immediates, valid VALUEs forever.
        unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) }
    }
}

/// `io_wait`'s arguments, checked: the fiber, the descriptor of `io` and
/// the events asked for.
#[inline(always)]
pub fn io_wait_arguments(ruby: &Ruby, fiber: Value, io: Value, events: Value) -> Result<(Value, RawFd, i32), Error> {
    let fiber = crate::ruby::fiber::check(ruby, fiber)?;
    let wanted = match fixnum(events).map(i32::try_from) {
        Some(Ok(wanted)) => wanted,
        _ => Integer::from_value(events).ok_or_else(|| type_error(ruby, "events must be an Integer"))?.to_i32()?,
    };
    let fd = crate::ruby::io::descriptor(ruby, io)?;
    Ok((fiber, fd, wanted))
}

/// `INT2FIX(0)`: what `select(0)` answers when it found nothing.
pub const ZERO: rb_sys::VALUE = 1;

/// Define `select_method`, `select`'s C entry, and `select_full`, the full
/// method wrapped by `raw_method!`, in a backend's `select.rs`, which
/// provides `select` (the full method) and `select_zero` (`select(0)`'s own
/// route, a C function). The entry only dispatches, by tail calls (C
/// functions: nothing to catch on the way back), so its frame saves nothing;
/// the full method stays out of line (inlined into the entry, its frame was
/// set up on every `select(0)` too).
#[macro_export]
macro_rules! define_select_entry {
    () => {
        /// `select`'s entry point (`define_select_entry!`).
        ///
        /// # Safety
        /// Called by Ruby as the `select` method.
        pub unsafe extern "C" fn select_method(rb_self: magnus::Value, duration: magnus::Value) -> magnus::Value {
            // SAFETY: called by Ruby as the method.
            unsafe {
                if $crate::selector::is_zero(duration) {
                    select_zero(rb_self, duration)
                } else {
                    select_full(rb_self, duration)
                }
            }
        }

        /// The full method, out of line (`define_select_entry!`).
        ///
        /// # Safety
        /// Called by Ruby as the `select` method.
        #[inline(never)]
        unsafe extern "C" fn select_full(rb_self: magnus::Value, duration: magnus::Value) -> magnus::Value {
            // SAFETY: the full method, as raw_method! wraps it.
            unsafe { $crate::raw_method!(select, 1)(rb_self, duration) }
        }
    };
}

/// `select`'s argument is an Integer 0 or a Float 0.0 (flonum): the call an
/// event loop makes on every turn, which the backends answer without
/// magnus's glue when there is nothing to do.
pub fn is_zero(duration: Value) -> bool {
    const FLONUM_ZERO: rb_sys::VALUE = 0x8000_0000_0000_0002;
    matches!(duration.as_raw(), ZERO | FLONUM_ZERO)
}

/// The value of a Fixnum (an immediate Integer), read from its bits.
#[inline(always)]
pub fn fixnum(value: Value) -> Option<i64> {
    let raw = value.as_raw();
    // A Fixnum is tagged with the low bit; the rest is the value, shifted.
    (raw & 1 == 1).then_some((raw as i64) >> 1)
}

/// `select`'s argument: `nil` waits forever; any Numeric is seconds.
#[inline]
pub fn duration(ruby: &Ruby, value: Value) -> Result<Option<Duration>, Error> {
    if value.is_nil() {
        return Ok(None);
    }
    if let Some(seconds) = fixnum(value) {
        return Ok(timeout::from_whole_seconds(seconds));
    }
    other_duration(ruby, value)
}

/// `duration` of a Float (common: a scheduler's time to its next timer) and
/// of anything else.
#[inline(never)]
fn other_duration(ruby: &Ruby, value: Value) -> Result<Option<Duration>, Error> {
    if let Some(int) = Integer::from_value(value) {
        // A Bignum is either far past FOREVER_SECONDS or far below zero.
        let seconds = match int.to_i64() {
            Ok(seconds) => seconds,
            Err(_) if value.funcall::<_, _, bool>("negative?", ())? => -1,
            Err(_) => i64::MAX,
        };
        return Ok(timeout::from_whole_seconds(seconds));
    }
    if let Some(float) = Float::from_value(value) {
        return Ok(timeout::from_seconds(float.to_f64()));
    }
    if value.is_kind_of(ruby.class_numeric()) {
        let seconds: f64 = value.funcall("to_f", ())?;
        return Ok(timeout::from_seconds(seconds));
    }
    Err(type_error(ruby, format!("select duration must be nil or Numeric, not {}", class_name(value))))
}
