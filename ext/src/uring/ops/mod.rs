//! One file per operation; every parking call goes through `park`.

pub mod park;
pub mod poll;
