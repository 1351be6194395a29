//! The receiver of a selector method, checked without `rb_protect`.
//!
//! magnus converts `&T` receivers with `rb_check_typeddata` under
//! `rb_protect`, about 200 instructions on every call, which is most of what
//! a `select(0)` or a `wakeup` costs. A receiver of our own types is a typed
//! T_DATA whose type pointer is `T::data_type()`: comparing that pointer is
//! the whole check. Anything else takes magnus's path, which raises the usual
//! `TypeError`.

use std::ops::Deref;

use magnus::{rb_sys::AsRawValue, DataType, Error, TryConvert, TypedData, Value};
use rb_sys::stable_api::StableApiDefinition;

/// A borrowed selector, valid for the method call (Ruby keeps the receiver
/// alive while its method runs).
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
        This(unsafe { &*rb_sys::rb_check_typeddata(value.as_raw(), data_type_of::<T>()).cast::<T>() })
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
