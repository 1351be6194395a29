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

impl<T: TypedData> TryConvert for This<T> {
    #[inline]
    fn try_convert(value: Value) -> Result<Self, Error> {
        let api = rb_sys::stable_api::get_default();
        let raw = value.as_raw();
        let ours = (T::data_type() as *const DataType).cast::<rb_sys::rb_data_type_t>();
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
                && std::ptr::eq(api.rtypeddata_type(raw), ours)
            {
                let data = api.rtypeddata_get_data(raw).cast::<T>();
                if !data.is_null() {
                    return Ok(This(&*data));
                }
            }
        }
        <&'static T as TryConvert>::try_convert(value).map(This)
    }
}
