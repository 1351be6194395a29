//! io-event's event bits, and their poll(2)/epoll(7) equivalents.

pub const READABLE: i32 = 1;
pub const PRIORITY: i32 = 2;
pub const WRITABLE: i32 = 4;
pub const ERROR: i32 = 8;
pub const HANGUP: i32 = 16;

/// The poll mask to wait for `events`. Errors and hang-ups are always reported.
pub fn to_poll(events: i32) -> u32 {
    let mut mask = (libc::POLLERR | libc::POLLHUP) as u32;
    if events & READABLE != 0 {
        mask |= libc::POLLIN as u32;
    }
    if events & PRIORITY != 0 {
        mask |= libc::POLLPRI as u32;
    }
    if events & WRITABLE != 0 {
        mask |= libc::POLLOUT as u32;
    }
    mask
}

/// The events to report to a waiter that asked for `wanted`, given the poll
/// mask the kernel returned. ERROR and HANGUP wake a reader (it then sees EOF
/// or the error from `read`); when they are all there is, every wanted bit is
/// reported, so a writer also wakes and sees its error from `write`.
pub fn from_poll(revents: u32, wanted: i32) -> i32 {
    let failed = revents & (libc::POLLERR | libc::POLLHUP) as u32 != 0;
    let mut events = 0;
    if revents & libc::POLLIN as u32 != 0 || failed {
        events |= READABLE;
    }
    if revents & libc::POLLPRI as u32 != 0 {
        events |= PRIORITY;
    }
    if revents & libc::POLLOUT as u32 != 0 {
        events |= WRITABLE;
    }
    let ready = events & wanted;
    if ready == 0 && failed {
        wanted & (READABLE | PRIORITY | WRITABLE)
    } else {
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_mask_always_has_errors() {
        assert_eq!(to_poll(0), (libc::POLLERR | libc::POLLHUP) as u32);
        assert_ne!(to_poll(READABLE) & libc::POLLIN as u32, 0);
        assert_ne!(to_poll(WRITABLE) & libc::POLLOUT as u32, 0);
        assert_ne!(to_poll(PRIORITY) & libc::POLLPRI as u32, 0);
    }

    #[test]
    fn only_wanted_bits_are_reported() {
        let both = (libc::POLLIN | libc::POLLOUT) as u32;
        assert_eq!(from_poll(both, READABLE), READABLE);
        assert_eq!(from_poll(both, WRITABLE), WRITABLE);
        assert_eq!(from_poll(both, READABLE | WRITABLE), READABLE | WRITABLE);
    }

    #[test]
    fn hangup_wakes_readers_and_writers() {
        assert_eq!(from_poll(libc::POLLHUP as u32, READABLE), READABLE);
        assert_eq!(from_poll(libc::POLLERR as u32, WRITABLE), WRITABLE);
        assert_eq!(from_poll(libc::POLLHUP as u32, READABLE | WRITABLE), READABLE);
    }
}
