//! One read or write that never blocks, and how to make it with the fewest
//! system calls.
//!
//! A socket takes `recv`/`send` with `MSG_DONTWAIT`: non-blocking for that
//! call whatever the descriptor's `O_NONBLOCK`, so its flags are neither read
//! nor changed (`O_NONBLOCK` belongs to the open file, which a forked child
//! or a dup may share). `read`/`write` on a socket are exactly these calls,
//! except that `write` adds `MSG_EOR` on a `SOCK_SEQPACKET` socket, so we do
//! too. A pipe, and any other file that waits for readiness, takes
//! `preadv2`/`pwritev2` with `RWF_NOWAIT`, non-blocking for that call in the
//! same way. One that refuses the flag (`EOPNOTSUPP`: ttys and named FIFOs
//! here, every pipe before Linux 6.4; `EPERM` or `ENOSYS` from a seccomp
//! filter or a kernel before 4.6) takes `read`/`write` with `O_NONBLOCK` set
//! for the call if it was not (`fcntl`), and put back after. So does a
//! regular file (block device, directory), whose `RWF_NOWAIT` reads answer
//! `-EAGAIN` for data not yet in the page cache: it never waits for
//! readiness, so that answer would only send the caller round the loop.
//!
//! Which is which is asked once (`getsockopt(SO_TYPE)`, then `fstat`) per
//! descriptor and IO object, and remembered (`Routes`). A remembered answer
//! may be wrong (the IO was reopened onto another file, or a new IO took a
//! freed one's address); every way is safe: `recv` on a non-socket fails
//! with `ENOTSOCK` and the call asks again, `RWF_NOWAIT` on a file that
//! refuses it falls back to the `fcntl` route, which works for everything,
//! and a regular file remembered as a pipe answers `-EAGAIN` until its data
//! has been read ahead into the page cache (a wait that ends, never a wrong
//! answer).

use std::cell::Cell;
use std::os::fd::RawFd;

use crate::ruby::buffer::BufferAccess;
use crate::selector::fd_memo::FdMemo;

/// How reads and writes reach a descriptor without blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `recv`/`send` with `MSG_DONTWAIT`; `send` also gets these flags.
    Socket { send_flags: libc::c_int },
    /// `preadv2`/`pwritev2` with `RWF_NOWAIT`.
    NoWait,
    /// `read`/`write` with `O_NONBLOCK` set around the call: a file that
    /// refuses `RWF_NOWAIT`.
    Plain,
    /// As `Plain`: a regular file, block device or directory, which never
    /// waits for readiness (URing gives it a ring op instead).
    File,
}

/// The route of each descriptor number, with the address of the IO object
/// it was found for.
pub type Routes = FdMemo<Route>;

/// Ask the kernel what `fd` is: a socket (and of which type), a file that
/// never waits for readiness (`File`), or anything else (`NoWait`).
pub fn probe(fd: RawFd) -> Route {
    let mut kind: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `size` are locals of the sizes getsockopt expects.
    let result = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut libc::c_int).cast(), &mut size)
    };
    if result < 0 {
        return probe_not_socket(fd);
    }
    let eor = if kind == libc::SOCK_SEQPACKET { libc::MSG_EOR } else { 0 };
    Route::Socket { send_flags: libc::MSG_DONTWAIT | eor }
}

/// The route of a descriptor that is not a socket (`fstat`).
fn probe_not_socket(fd: RawFd) -> Route {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the out-pointer (checked by the result).
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Route::Plain;
    }
    // SAFETY: fstat succeeded, so it filled the struct in.
    match unsafe { stat.assume_init() }.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR => Route::File,
        _ => Route::NoWait,
    }
}

/// One transfer's way to its descriptor: the route, changed when it meets
/// a descriptor it does not fit (a socket route on a non-socket, `RWF_NOWAIT`
/// refused), and the flags to put back at the end.
pub struct Channel {
    fd: RawFd,
    route: Cell<Route>,
    restore: Cell<Option<libc::c_int>>,
}

impl Channel {
    pub fn new(fd: RawFd, route: Route) -> Channel {
        let restore = if route.sets_nonblock() { set_nonblock(fd) } else { None };
        Channel { fd, route: Cell::new(route), restore: Cell::new(restore) }
    }

    /// The descriptor this channel was opened for.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Take `route` from now on (setting `O_NONBLOCK` for `Plain` and `File`).
    fn reroute(&self, route: Route) {
        self.route.set(route);
        if route.sets_nonblock() && self.restore.get().is_none() {
            self.restore.set(set_nonblock(self.fd));
        }
    }

    /// One read(2)/write(2)/pread(2)/pwrite(2) (or recv/send,
    /// preadv2/pwritev2), bytes moved or `-errno`. The kernel is done with
    /// the buffer when it returns. Returns the route it took, when it had to
    /// change it.
    #[inline(always)]
    pub fn attempt(&self, access: BufferAccess, base: *mut u8, len: usize, at: Option<u64>) -> (isize, Option<Route>) {
        let len = len.min(isize::MAX as usize);
        let mut changed = None;
        if let (Route::Socket { send_flags }, None) = (self.route.get(), at) {
            let result = retry(|| {
                // SAFETY: `base..base+len` lies inside the locked buffer that the
                // transfer loop holds for the duration of this call.
                unsafe {
                    match access {
                        BufferAccess::Fill => libc::recv(self.fd, base.cast(), len, libc::MSG_DONTWAIT),
                        BufferAccess::Drain => libc::send(self.fd, base.cast(), len, send_flags),
                    }
                }
            });
            if result != -(libc::ENOTSOCK as isize) {
                return (result, None);
            }
            let route = probe_not_socket(self.fd);
            self.reroute(route);
            changed = Some(route);
        }
        if self.route.get() == Route::NoWait {
            let result = nowait(self.fd, access, base, len, at);
            if !refused(result) {
                return (result, changed);
            }
            // A file that refuses the flag, or a regular file behind a stale
            // answer (the IO reopened onto one): which, asked again.
            let route = match probe_not_socket(self.fd) {
                Route::File => Route::File,
                _ => Route::Plain,
            };
            self.reroute(route);
            changed = Some(route);
        }
        (plain(self.fd, access, base, len, at), changed)
    }

    /// Put back the flags `new` (or a fallback) changed, if `fd` still names
    /// the same descriptor (`still_ours`): a fiber may have closed it
    /// meanwhile, and the number may be someone else's now.
    pub fn finish(self, still_ours: impl FnOnce() -> bool) {
        if let Some(flags) = self.restore.get() {
            if still_ours() {
                // SAFETY: F_SETFL with an integer; errors are harmless here.
                unsafe { libc::fcntl(self.fd, libc::F_SETFL, flags) };
            }
        }
    }
}

impl Route {
    fn sets_nonblock(self) -> bool {
        matches!(self, Route::Plain | Route::File)
    }
}

/// Whether `RWF_NOWAIT` was refused for this file (`EOPNOTSUPP`), or
/// `preadv2`/`pwritev2` altogether (a seccomp filter's `EPERM`, `ENOSYS`).
fn refused(result: isize) -> bool {
    [libc::EOPNOTSUPP, libc::EPERM, libc::ENOSYS].iter().any(|&errno| result == -(errno as isize))
}

/// read/write/pread/pwrite.
fn plain(fd: RawFd, access: BufferAccess, base: *mut u8, len: usize, at: Option<u64>) -> isize {
    let at = match at.map(libc::off_t::try_from) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(_)) => return -(libc::EINVAL as isize),
    };
    retry(|| {
        // SAFETY: `base..base+len` lies inside the locked buffer that the
        // transfer loop holds for the duration of this call.
        unsafe {
            match (access, at) {
                (BufferAccess::Fill, None) => libc::read(fd, base.cast(), len),
                (BufferAccess::Fill, Some(at)) => libc::pread(fd, base.cast(), len, at),
                (BufferAccess::Drain, None) => libc::write(fd, base.cast(), len),
                (BufferAccess::Drain, Some(at)) => libc::pwrite(fd, base.cast(), len, at),
            }
        }
    })
}

/// One read or write that does not wait for the descriptor: `preadv2` or
/// `pwritev2` with `RWF_NOWAIT`, at `at` or (`None`) at the current
/// position. Bytes moved or `-errno`: `-EAGAIN` when the descriptor is not
/// ready, `-EOPNOTSUPP` when its file does not take `RWF_NOWAIT`. The kernel
/// is done with the buffer when it returns. (On a regular file the call may
/// still wait, for a frozen filesystem or another thread's hold of the file
/// position: regular files take other routes, but for a stale answer.)
#[inline]
pub fn nowait(fd: RawFd, access: BufferAccess, base: *mut u8, len: usize, at: Option<u64>) -> isize {
    let at = match at.map(libc::off_t::try_from) {
        // -1: the current position, and a stream's only one.
        None => -1,
        Some(Ok(at)) => at,
        Some(Err(_)) => return -(libc::EINVAL as isize),
    };
    let iov = libc::iovec { iov_base: base.cast(), iov_len: len.min(isize::MAX as usize) };
    retry(|| {
        // SAFETY: `iov` names `base..base+len`, inside the locked buffer that
        // the transfer loop holds for the duration of this call.
        unsafe {
            match access {
                BufferAccess::Fill => libc::preadv2(fd, &iov, 1, at, libc::RWF_NOWAIT),
                BufferAccess::Drain => libc::pwritev2(fd, &iov, 1, at, libc::RWF_NOWAIT),
            }
        }
    })
}

/// `call` until it is not interrupted: its result, or `-errno`.
fn retry(mut call: impl FnMut() -> isize) -> isize {
    loop {
        let result = call();
        if result >= 0 {
            return result;
        }
        // SAFETY: errno is this thread's, set by the call that just failed.
        let errno = unsafe { *libc::__errno_location() };
        if errno != libc::EINTR {
            return -(errno as isize);
        }
    }
}

/// Set O_NONBLOCK on `fd` if it is not set; returns the flags to put back.
/// (Ruby makes pipes and sockets non-blocking already; files, ttys and
/// inherited descriptors may not be.) A failure leaves the descriptor alone:
/// the attempt then reports whatever is wrong with it.
fn set_nonblock(fd: RawFd) -> Option<libc::c_int> {
    // SAFETY: fcntl with F_GETFL takes no pointer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_NONBLOCK != 0 {
        return None;
    }
    // SAFETY: as above, F_SETFL with an integer.
    let set = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    (set == 0).then_some(flags)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    fn pair(socket: bool) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        let result = if socket {
            // SAFETY: `fds` has room for the two descriptors socketpair writes.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
        } else {
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }
        };
        assert_eq!(result, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn flags(fd: &OwnedFd) -> libc::c_int {
        flags_of(fd.as_raw_fd())
    }

    fn flags_of(fd: RawFd) -> libc::c_int {
        // SAFETY: fcntl with F_GETFL takes no pointer.
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    }

    #[test]
    fn sockets_are_found_and_remembered_per_io() {
        let (a, _b) = pair(true);
        let (r, _w) = pair(false);
        let mut routes = Routes::default();
        assert_eq!(routes.get(a.as_raw_fd(), 1, probe), Route::Socket { send_flags: libc::MSG_DONTWAIT });
        assert_eq!(routes.get(r.as_raw_fd(), 1, probe), Route::NoWait);
        routes.set(r.as_raw_fd(), 1, Route::Socket { send_flags: 0 });
        assert_eq!(routes.get(r.as_raw_fd(), 1, probe), Route::Socket { send_flags: 0 }, "remembered");
        assert_eq!(routes.get(r.as_raw_fd(), 2, probe), Route::NoWait, "another IO is asked about again");
        assert_eq!(routes.get(-1, 1, probe), Route::Plain);
    }

    #[test]
    fn a_blocking_socket_is_read_without_blocking_or_changing_its_flags() {
        let (a, b) = pair(true);
        let before = flags(&a);
        assert_eq!(before & libc::O_NONBLOCK, 0);
        let channel = Channel::new(a.as_raw_fd(), probe(a.as_raw_fd()));
        let mut byte = [0u8; 1];
        assert_eq!(channel.attempt(BufferAccess::Fill, byte.as_mut_ptr(), 1, None), (-(libc::EAGAIN as isize), None));
        let mut out = *b"z";
        let channel_b = Channel::new(b.as_raw_fd(), probe(b.as_raw_fd()));
        assert_eq!(channel_b.attempt(BufferAccess::Drain, out.as_mut_ptr(), 1, None), (1, None));
        assert_eq!(channel.attempt(BufferAccess::Fill, byte.as_mut_ptr(), 1, None), (1, None));
        assert_eq!(&byte, b"z");
        channel.finish(|| true);
        assert_eq!(flags(&a), before);
    }

    #[test]
    fn a_wrong_socket_route_asks_again_and_leaves_a_pipe_alone() {
        let (r, w) = pair(false);
        let before = flags(&r);
        assert_eq!(before & libc::O_NONBLOCK, 0, "a blocking pipe");
        let channel = Channel::new(r.as_raw_fd(), Route::Socket { send_flags: libc::MSG_DONTWAIT });
        let mut byte = [0u8; 1];
        assert_eq!(
            channel.attempt(BufferAccess::Fill, byte.as_mut_ptr(), 1, None),
            (-(libc::EAGAIN as isize), Some(Route::NoWait)),
            "read without waiting after the ENOTSOCK"
        );
        assert_eq!(flags(&r), before, "RWF_NOWAIT needs no O_NONBLOCK");
        // SAFETY: writes one byte from a static buffer.
        assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"q".as_ptr().cast(), 1) }, 1);
        assert_eq!(channel.attempt(BufferAccess::Fill, byte.as_mut_ptr(), 1, None), (1, None));
        assert_eq!(&byte, b"q");
        channel.finish(|| true);
        assert_eq!(flags(&r), before);
    }

    #[test]
    fn a_file_that_refuses_rwf_nowait_gets_o_nonblock_for_the_call() {
        let mut master = 0;
        let mut slave = 0;
        // SAFETY: openpty writes two descriptors into the out-pointers; the rest may be null.
        let opened =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(opened, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let before = flags(&slave);
        assert_eq!(before & libc::O_NONBLOCK, 0, "a blocking tty");
        assert_eq!(probe(slave.as_raw_fd()), Route::NoWait);
        let channel = Channel::new(slave.as_raw_fd(), Route::NoWait);
        let mut byte = [0u8; 1];
        let (result, changed) = channel.attempt(BufferAccess::Fill, byte.as_mut_ptr(), 1, None);
        assert_eq!(result, -(libc::EAGAIN as isize), "nothing typed: no wait");
        if changed.is_some() {
            // This kernel's ttys refuse RWF_NOWAIT (they do here): the call set O_NONBLOCK...
            assert_eq!(changed, Some(Route::Plain));
            assert_ne!(flags(&slave) & libc::O_NONBLOCK, 0);
        }
        channel.finish(|| true);
        // ...and put the flags back.
        assert_eq!(flags(&slave), before);
        drop(master);
    }

    #[test]
    fn regular_files_take_the_file_route_and_get_o_nonblock() {
        let file = std::fs::File::open("/proc/self/exe").expect("open a regular file");
        assert_eq!(probe(file.as_raw_fd()), Route::File);
        let before = flags_of(file.as_raw_fd());
        let channel = Channel::new(file.as_raw_fd(), Route::File);
        assert_ne!(flags_of(file.as_raw_fd()) & libc::O_NONBLOCK, 0, "O_NONBLOCK for the call");
        let mut head = [0u8; 4];
        assert_eq!(channel.attempt(BufferAccess::Fill, head.as_mut_ptr(), 4, Some(0)), (4, None));
        assert_eq!(&head, b"\x7fELF");
        channel.finish(|| true);
        assert_eq!(flags_of(file.as_raw_fd()), before);
    }
}
