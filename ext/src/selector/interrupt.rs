//! The wake-up eventfd: the only thing another thread (or a signal context)
//! ever touches to end a blocking `select`.
//!
//! `close` gives the descriptor back at once. That is safe because every
//! writer is serialised with it: `wakeup` runs with the GVL, as does `close`;
//! the unblock function runs only while the owner is inside the GVL-free
//! wait, and `close` is refused while a `select` is blocked.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use std::os::fd::RawFd;

pub struct Interrupt {
    /// -1 once closed.
    fd: AtomicI32,
}

impl Interrupt {
    pub fn new() -> io::Result<Interrupt> {
        // SAFETY: eventfd takes no pointers; a negative result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Interrupt { fd: AtomicI32::new(fd) })
    }

    /// The descriptor, or -1 once closed.
    pub fn fd(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }

    pub fn signal(&self) {
        signal_fd(self.fd());
    }

    /// Consume pending signals (the EPoll backend reads the eventfd itself).
    pub fn clear(&self) {
        let fd = self.fd();
        if fd < 0 {
            return;
        }
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a local u64; EAGAIN when nothing is pending is fine.
        unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
    }

    /// Close the descriptor (idempotent). See the module comment for why no
    /// writer can still be using the number.
    pub fn close(&self) {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: `fd` was ours and nobody else closes it (the swap above
            // hands it to exactly one caller).
            unsafe { libc::close(fd) };
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.close();
    }
}

/// Add one to the eventfd counter. Async-signal-safe: a single write(2).
pub fn signal_fd(fd: RawFd) {
    if fd < 0 {
        return;
    }
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local u64. EAGAIN (counter saturated) still
    // leaves the eventfd readable, which is all a wake-up needs.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}
