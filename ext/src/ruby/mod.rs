//! The Ruby boundary: every call into the Ruby C API that can raise, switch
//! fibers or release the GVL lives below this module.

pub mod buffer;
pub mod error;
pub mod fiber;
pub mod io;
pub mod nogvl;
pub mod pins;
pub mod receiver;
pub mod thread;
