//! Descriptors of IO objects.

use std::os::fd::RawFd;

use magnus::{prelude::*, Error, Integer, RFile, Ruby, Value};

use super::error::{io_error, type_error};

/// The descriptor behind `io`: an `IO` (raising `IOError` when it is closed)
/// or a raw Integer descriptor.
pub fn descriptor(ruby: &Ruby, io: Value) -> Result<RawFd, Error> {
    if RFile::from_value(io).is_some() {
        return io.funcall("fileno", ());
    }
    if let Some(int) = Integer::from_value(io) {
        let fd = int.to_i32()?;
        if fd < 0 {
            return Err(io_error(ruby, format!("invalid descriptor {fd}")));
        }
        return Ok(fd);
    }
    Err(type_error(ruby, "expected an IO or an Integer descriptor"))
}
