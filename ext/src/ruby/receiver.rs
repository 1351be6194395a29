//! The receiver of a selector method, checked without `rb_protect`.
//!
//! magnus converts `&T` receivers with `rb_check_typeddata` under
//! `rb_protect`, about 200 instructions on every call, which is most of what
//! a `select(0)` or a `wakeup` costs. A receiver of our own types is a typed
//! T_DATA whose type pointer is `T::data_type()`: comparing that pointer is
//! the whole check. Anything else takes magnus's path (methods wrapped by
//! magnus) or `rb_check_typeddata` (raw entries: `raw_method!`), which
//! raise the usual `TypeError`.

use std::ops::Deref;
use std::panic::AssertUnwindSafe;

use magnus::{rb_sys::AsRawValue, DataType, Error, IntoValue, Ruby, TryConvert, TypedData, Value};
use rb_sys::stable_api::StableApiDefinition;

/// A borrowed selector, valid for the method call (Ruby keeps the receiver
/// alive while its method runs). A plain pointer (transparent), so that C
/// functions of ours can take it.
#[repr(transparent)]
pub struct This<T: 'static>(&'static T);

impl<T> Deref for This<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.0
    }
}

fn data_type_of<T: TypedData>() -> *const rb_sys::rb_data_type_t {
    (T::data_type() as *const DataType).cast()
}

impl<T: TypedData> This<T> {
    /// The receiver if it is exactly a `T`; no Ruby call, no allocation.
    #[inline]
    pub fn exact(value: Value) -> Option<This<T>> {
        let api = rb_sys::stable_api::get_default();
        let raw = value.as_raw();
        // SAFETY: `raw` is a live VALUE (the receiver); each accessor is only
        // applied once the previous check has established what it requires
        // (a heap object, of type T_DATA, typed). `DataType` is a transparent
        // wrapper of `rb_data_type_t`, so the pointers are comparable, and an
        // object of that exact type wraps a `T` (our `free_immediately` types
        // clear nothing before the object itself is gone).
        unsafe {
            if !api.special_const_p(raw)
                && api.builtin_type(raw) == rb_sys::ruby_value_type::RUBY_T_DATA
                && api.rtypeddata_p(raw)
                && std::ptr::eq(api.rtypeddata_type(raw), data_type_of::<T>())
            {
                let data = api.rtypeddata_get_data(raw).cast::<T>();
                if !data.is_null() {
                    return Some(This(&*data));
                }
            }
        }
        None
    }

    /// For raw method entry points (`extern "C"` functions registered
    /// without magnus's glue): the receiver, or Ruby's own `TypeError`.
    ///
    /// # Safety
    /// The error is raised by `rb_check_typeddata`, a longjmp: call this only
    /// where no Rust value with a destructor is alive in the caller's frames.
    #[inline]
    pub unsafe fn get_or_raise(value: Value) -> This<T> {
        if let Some(this) = This::exact(value) {
            return this;
        }
        // SAFETY: raises TypeError for anything that is not a `T` (the
        // caller accepts the longjmp); otherwise returns its data pointer.
        let data = unsafe { rb_sys::rb_check_typeddata(value.as_raw(), data_type_of::<T>()) }.cast::<T>();
        if data.is_null() {
            // A `T` not initialised (our classes have no allocator, so this
            // is not reachable from Ruby): as magnus's conversion answers.
            // SAFETY: raises TypeError (the caller accepts the longjmp).
            unsafe { rb_sys::rb_raise(rb_sys::rb_eTypeError, c"uninitialized selector".as_ptr()) }
        }
        // SAFETY: a non-null data pointer of an object of type `T` is a `T`.
        This(unsafe { &*data })
    }
}

impl<T: TypedData> TryConvert for This<T> {
    #[inline]
    fn try_convert(value: Value) -> Result<Self, Error> {
        match This::exact(value) {
            Some(this) => Ok(this),
            None => <&'static T as TryConvert>::try_convert(value).map(This),
        }
    }
}

/// The body of a method registered through `raw_method!`: the receiver
/// checked as `This::get_or_raise` does (a pointer comparison for a `T`,
/// Ruby's own `TypeError` otherwise), a panic caught, and an error raised
/// once every value of the body is gone. What magnus's `method!` does, in
/// fewer steps: the hot methods (`io_read`, `io_wait`, `resume`...) are
/// called on every turn of an event loop.
///
/// # Safety
/// Only from an `extern "C"` method entry called by Ruby, with no Rust
/// value that needs dropping alive in its frame (raising is a longjmp).
#[inline(always)]
pub unsafe fn call_method<T: TypedData + 'static, R: IntoValue>(
    rb_self: Value,
    body: impl FnOnce(&Ruby, This<T>) -> Result<R, Error>,
) -> Value {
    // SAFETY: raises (a longjmp) before any value of ours exists.
    let this = unsafe { This::<T>::get_or_raise(rb_self) };
    // SAFETY: as the caller promises.
    unsafe { call_with(this, body) }
}

/// `call_method` for a receiver already checked (`This::exact`).
///
/// # Safety
/// As `call_method`.
#[inline(always)]
pub unsafe fn call_with<T: TypedData + 'static, R: IntoValue>(
    this: This<T>,
    body: impl FnOnce(&Ruby, This<T>) -> Result<R, Error>,
) -> Value {
    // SAFETY: Ruby calls methods on a Ruby thread, with the GVL.
    let ruby = unsafe { Ruby::get_unchecked() };
    let result =
        magnus::rb_sys::catch_unwind(AssertUnwindSafe(|| body(&ruby, this).map(|value| value.into_value_with(&ruby))));
    match result {
        Ok(Ok(value)) => value,
        // SAFETY: the body and its values are gone; nothing here needs dropping.
        Ok(Err(error)) | Err(error) => unsafe { raise_error(error) },
    }
}

/// Raise `error` from a method entry. An error made of a class and a
/// message becomes its exception here, under `protect` (a constructor that
/// throws or breaks comes back as that jump, which is then resumed); magnus
/// would make it inside its own raise, where a jump is a panic in a frame
/// that cannot unwind: an abort.
///
/// # Safety
/// As `call_method`: nothing that needs dropping may be alive in the
/// caller's frames.
#[cold]
#[inline(never)]
unsafe fn raise_error(error: Error) -> ! {
    use magnus::{error::ErrorType, prelude::*};
    // SAFETY: called from a method entry, with the GVL.
    let ruby = unsafe { Ruby::get_unchecked() };
    let error = match error.error_type() {
        ErrorType::Error(class, message) if class.as_raw() != ruby.exception_fatal().as_raw() => {
            let made = class.new_instance((ruby.str_new(message),));
            // The message is copied: nothing of the error is needed now.
            drop(error);
            match made {
                Ok(exception) => Error::from(exception),
                Err(other) => other,
            }
        }
        _ => error,
    };
    // SAFETY: as the caller promises; `error` is moved in whole.
    unsafe { magnus::rb_sys::resume_error(error) }
}

/// The arguments of an arity -1 method.
///
/// # Safety
/// `argv` points at `argc` values (Ruby's calling convention).
#[inline(always)]
pub unsafe fn arguments<'a>(argc: std::os::raw::c_int, argv: *const Value) -> &'a [Value] {
    match usize::try_from(argc) {
        // SAFETY: as the caller promises; `Value` is a transparent VALUE.
        Ok(len) if len > 0 && !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, len) },
        _ => &[],
    }
}

/// A method entry point for `define_method`, like magnus's `method!` (same
/// signatures: `fn(&Ruby, This<T>, args...) -> Result<R, Error>`, arity -1
/// or 0 to 3) through `call_method`.
#[macro_export]
macro_rules! raw_method {
    ($func:expr, -1) => {{
        unsafe extern "C" fn entry(
            argc: std::os::raw::c_int,
            argv: *const magnus::Value,
            rb_self: magnus::Value,
        ) -> magnus::Value {
            // SAFETY: Ruby calls this as a method of arity -1.
            unsafe {
                let args = $crate::ruby::receiver::arguments(argc, argv);
                $crate::ruby::receiver::call_method(rb_self, |ruby, this| $func(ruby, this, args))
            }
        }
        entry as unsafe extern "C" fn(std::os::raw::c_int, *const magnus::Value, magnus::Value) -> magnus::Value
    }};
    ($func:expr, 0) => {{
        unsafe extern "C" fn entry(rb_self: magnus::Value) -> magnus::Value {
            // SAFETY: Ruby calls this as a method.
            unsafe { $crate::ruby::receiver::call_method(rb_self, |ruby, this| $func(ruby, this)) }
        }
        entry as unsafe extern "C" fn(magnus::Value) -> magnus::Value
    }};
    ($func:expr, 1) => {{
        unsafe extern "C" fn entry(rb_self: magnus::Value, a: magnus::Value) -> magnus::Value {
            // SAFETY: Ruby calls this as a method.
            unsafe { $crate::ruby::receiver::call_method(rb_self, |ruby, this| $func(ruby, this, a)) }
        }
        entry as unsafe extern "C" fn(magnus::Value, magnus::Value) -> magnus::Value
    }};
    ($func:expr, 3) => {{
        unsafe extern "C" fn entry(
            rb_self: magnus::Value,
            a: magnus::Value,
            b: magnus::Value,
            c: magnus::Value,
        ) -> magnus::Value {
            // SAFETY: Ruby calls this as a method.
            unsafe { $crate::ruby::receiver::call_method(rb_self, |ruby, this| $func(ruby, this, a, b, c)) }
        }
        entry as unsafe extern "C" fn(magnus::Value, magnus::Value, magnus::Value, magnus::Value) -> magnus::Value
    }};
}
