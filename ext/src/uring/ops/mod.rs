//! One file per operation; every parking call goes through `park`.

pub mod close;
pub mod park;
pub mod poll;
pub mod process;
pub mod rw;
