//! The wake-up eventfd: the only thing another thread (or a signal context)
//! ever touches to end a blocking `select`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Interrupt {
    fd: OwnedFd,
}

impl Interrupt {
    pub fn new() -> io::Result<Interrupt> {
        // SAFETY: eventfd takes no pointers; a negative result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Interrupt { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn signal(&self) {
        signal_fd(self.fd());
    }

    /// Consume pending signals (the EPoll backend reads the eventfd itself).
    pub fn clear(&self) {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a local u64; EAGAIN when nothing is pending is fine.
        unsafe { libc::read(self.fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

/// Add one to the eventfd counter. Async-signal-safe: a single write(2).
pub fn signal_fd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local u64. EAGAIN (counter saturated) still
    // leaves the eventfd readable, which is all a wake-up needs.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}
