//! The epoll system calls, and nothing else: create, control, wait.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::registry::Op;

/// A new epoll set (CLOEXEC).
pub fn create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes a flag; a negative result is checked.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `epoll_ctl(epoll, op, fd, {mask, data})`.
pub fn ctl(epoll: RawFd, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
    let op = match op {
        Op::Add => libc::EPOLL_CTL_ADD,
        Op::Modify => libc::EPOLL_CTL_MOD,
        Op::Delete => libc::EPOLL_CTL_DEL,
    };
    let mut event = libc::epoll_event { events: mask, u64: data };
    // SAFETY: `event` is a local that outlives the call (DEL ignores it, but
    // kernels before 2.6.9 wanted it non-null, so it is always passed).
    let result = unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Room for the events of one wait, left uninitialised (zeroing it would cost
/// more than a non-blocking wait that finds nothing).
pub struct Events<const N: usize> {
    slots: [MaybeUninit<libc::epoll_event>; N],
    filled: usize,
}

impl<const N: usize> Events<N> {
    pub fn new() -> Events<N> {
        Events { slots: [MaybeUninit::uninit(); N], filled: 0 }
    }

    /// The events the last wait filled in.
    pub fn filled(&self) -> &[libc::epoll_event] {
        // SAFETY: the kernel initialised the first `filled` slots (`set_filled`
        // is given only what a wait returned, at most N).
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<libc::epoll_event>(), self.filled) }
    }

    fn room(&mut self) -> (*mut libc::epoll_event, i32) {
        self.filled = 0;
        (self.slots.as_mut_ptr().cast(), i32::try_from(N).unwrap_or(i32::MAX))
    }

    fn set_filled(&mut self, count: libc::c_long) -> io::Result<usize> {
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = (count as usize).min(N);
        Ok(self.filled)
    }
}

/// `epoll_wait` into `events`; returns how many were filled. `timeout_ms`
/// -1 waits forever, 0 never blocks. EINTR is an `Interrupted` error.
pub fn wait<const N: usize>(epoll: RawFd, events: &mut Events<N>, timeout_ms: i32) -> io::Result<usize> {
    let (room, capacity) = events.room();
    // SAFETY: the kernel writes at most `capacity` entries at `room`.
    let count = unsafe { libc::epoll_wait(epoll, room, capacity, timeout_ms) };
    events.set_filled(libc::c_long::from(count))
}

/// Whether `epoll_pwait2` (Linux 5.11+) may be used; cleared when the kernel
/// lacks it (ENOSYS) or a sandbox denies it (EPERM, which it never answers
/// otherwise).
static HAS_PWAIT2: AtomicBool = AtomicBool::new(true);

/// The kernel's `struct __kernel_timespec` (64-bit fields on every target).
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `epoll_wait` for `timeout` (`None`: until woken) at nanosecond precision
/// where the kernel has `epoll_pwait2`, else rounded up to milliseconds
/// (`timeout_ms`), so that `select(0.0005)` waits half a millisecond, not one.
/// Called as a raw system call: glibc has a wrapper only from 2.35 (and musl
/// none), and linking to it would keep the library from loading on older
/// systems at all.
pub fn wait_for<const N: usize>(epoll: RawFd, events: &mut Events<N>, timeout: Option<Duration>) -> io::Result<usize> {
    if HAS_PWAIT2.load(Ordering::Relaxed) {
        let spec = timeout.map(|timeout| KernelTimespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        });
        let spec_ptr = spec.as_ref().map_or(std::ptr::null(), |spec| spec as *const KernelTimespec);
        let (room, capacity) = events.room();
        // SAFETY: the kernel writes at most `capacity` entries at `room`;
        // `spec` (or null: no timeout) outlives the call; no signal mask.
        let count = unsafe {
            libc::syscall(libc::SYS_epoll_pwait2, epoll, room, capacity, spec_ptr, std::ptr::null::<u8>(), 0usize)
        };
        match events.set_filled(count) {
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                HAS_PWAIT2.store(false, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    wait(epoll, events, timeout_ms(timeout))
}

/// `select`'s timeout in whole milliseconds for `epoll_wait`: `None` is
/// forever (-1); anything else is rounded up, so that a short wait never
/// turns into a busy loop of zero-millisecond waits.
pub fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(duration) => {
            let millis = duration.as_nanos().div_ceil(1_000_000);
            i32::try_from(millis).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(999))), 1);
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }
}
