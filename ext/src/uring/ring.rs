//! The io_uring instance: setup with the flag fallback chain, submission with
//! retry, reaping with CQ-overflow recovery, the deferred task-work check and
//! the blocking wait. The only file that talks to the ring.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// Bit 63 marks a sentinel `user_data`; op handles never set it.
const SENTINEL: u64 = 1 << 63;
/// The read of the wake-up eventfd.
pub const USER_DATA_WAKEUP: u64 = SENTINEL | 1;
/// An `ASYNC_CANCEL` request (its own result is of no interest).
pub const USER_DATA_CANCEL: u64 = SENTINEL | 2;
/// The wait timeout on kernels without `EXT_ARG`.
pub const USER_DATA_TIMEOUT: u64 = SENTINEL | 3;
/// Bits 63 and 62 mark an op its caller completes without parking
/// (`URing::complete_now`); the other bits count such ops, so a late
/// completion of one given up on never passes for a later one.
pub const INLINE_TAG: u64 = SENTINEL | 1 << 62;

/// `IORING_ENTER_GETEVENTS`.
const ENTER_GETEVENTS: u32 = 1;

/// Submission queue entries per ring (as io-event); the CQ gets four times as many.
pub const ENTRIES: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL (6.1+).
    Deferred,
    /// COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL (5.19+).
    Cooperative,
    /// SUBMIT_ALL (5.18+).
    SubmitAll,
    /// No setup flags (5.6+).
    Plain,
}

impl Setup {
    fn apply(self, builder: &mut io_uring::Builder) {
        match self {
            Setup::Deferred => {
                builder.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().setup_submit_all();
            }
            Setup::Cooperative => {
                builder.setup_coop_taskrun().setup_taskrun_flag().setup_submit_all();
            }
            Setup::SubmitAll => {
                builder.setup_submit_all();
            }
            Setup::Plain => {}
        }
    }
}

pub struct Ring {
    uring: IoUring,
    setup: Setup,
    ext_arg: bool,
    nodrop: bool,
    overflow_seen: u32,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Target of the armed wake-up read; lives as long as the ring.
    wake_buf: Box<u64>,
    /// The legacy wait timeout; the kernel copies it when the SQE is submitted.
    timeout: Box<types::Timespec>,
}

impl Ring {
    /// A ring with the best flags this kernel accepts (EINVAL steps down).
    /// `legacy` behaves as on an old kernel: no setup flags and no EXT_ARG.
    pub fn new(entries: u32, wake_fd: RawFd, legacy: bool) -> io::Result<Ring> {
        let chain: &[Setup] = if legacy {
            &[Setup::Plain]
        } else {
            &[Setup::Deferred, Setup::Cooperative, Setup::SubmitAll, Setup::Plain]
        };
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for &setup in chain {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(entries * 4).dontfork();
            setup.apply(&mut builder);
            match builder.build(entries) {
                Ok(uring) => {
                    let params = uring.params();
                    let ext_arg = !legacy && params.is_feature_ext_arg();
                    let nodrop = params.is_feature_nodrop();
                    return Ok(Ring {
                        uring,
                        setup,
                        ext_arg,
                        nodrop,
                        overflow_seen: 0,
                        wake_fd,
                        wake_armed: false,
                        wake_buf: Box::new(0),
                        timeout: Box::new(types::Timespec::new()),
                    });
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    pub fn setup(&self) -> Setup {
        self.setup
    }

    pub fn has_ext_arg(&self) -> bool {
        self.ext_arg
    }

    /// Queue `entry`, flushing the SQ first when it is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until its completion is reaped.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Push `entry` and submit everything queued in one enter (with
    /// GETEVENTS, as `submit`): the usual case of parking a fiber. `Err`
    /// says whether the entry was pushed; the caller then takes the general
    /// route (`push` and `submit`, reaping to make room).
    ///
    /// # Safety
    /// As `push`.
    pub unsafe fn push_and_submit(&mut self, entry: &squeue::Entry) -> Result<(), bool> {
        let queued = {
            let mut sq = self.uring.submission();
            // SAFETY: forwarded from the caller's contract.
            if unsafe { sq.push(entry) }.is_err() {
                return Err(false);
            }
            sq.len()
        };
        // SAFETY: as `enter_getevents`.
        match unsafe { self.uring.submitter().enter::<libc::sigset_t>(queued as u32, 0, ENTER_GETEVENTS, None) } {
            Ok(submitted) if submitted == queued => Ok(()),
            _ => Err(true),
        }
    }

    /// Submit everything queued. Also runs deferred task work and flushes a
    /// CQ overflow (the crate adds GETEVENTS when either is flagged).
    pub fn submit(&mut self) -> io::Result<()> {
        let mut stalls = 0;
        loop {
            match self.enter_getevents() {
                Ok(_) if self.uring.submission().is_empty() => return Ok(()),
                // A short submit (possible without SUBMIT_ALL): go on with the rest.
                Ok(0) => stalls += 1,
                Ok(_) => {}
                // EBUSY/EAGAIN (the CQ is full, the kernel short of memory)
                // go back too: the caller must reap before submitting more.
                Err(error) if error.raw_os_error() != Some(libc::EINTR) => return Err(error),
                Err(_) => {}
            }
            if stalls > 64 {
                return Err(io::Error::from_raw_os_error(libc::EAGAIN));
            }
        }
    }

    /// Submit what is queued and, in the same call, run deferred task work
    /// (GETEVENTS with `min_complete` 0 never blocks). Completions that the
    /// submission itself causes (a write that wakes a parked read) are then
    /// in the CQ when this returns, which saves a second enter.
    fn enter_getevents(&mut self) -> io::Result<usize> {
        let to_submit = self.uring.submission().len() as u32;
        // SAFETY: no argument pointer is passed; the flags ask for nothing
        // that needs one.
        unsafe { self.uring.submitter().enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None) }
    }

    /// Whether a non-blocking check for completions must enter the kernel:
    /// something to submit, deferred task work flagged, or a CQ overflow.
    /// Reads the SQ flags with plain loads; makes no system call. The kernel
    /// sets the TASKRUN bit only on rings set up with TASKRUN_FLAG (before
    /// 5.19 the bit was unused and stays 0), so it needs no setup check.
    pub fn needs_enter(&mut self) -> bool {
        let sq = self.uring.submission();
        !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
    }

    /// Nothing to submit, no deferred task work flagged, no overflow and
    /// nothing in the CQ: a non-blocking `select` has nothing to collect.
    /// Plain loads only.
    pub fn is_quiet(&mut self) -> bool {
        !self.needs_enter() && self.has_no_completions()
    }

    /// Whether the CQ is empty (a plain load; an overflow is `needs_enter`'s).
    pub fn has_no_completions(&mut self) -> bool {
        self.uring.completion().is_empty()
    }

    /// Whether SQEs are waiting to be submitted.
    pub fn has_queued(&mut self) -> bool {
        !self.uring.submission().is_empty()
    }

    /// Arm the wake-up read if it is not armed already.
    pub fn arm_wakeup(&mut self) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::Read::new(types::Fd(self.wake_fd), (&mut *self.wake_buf as *mut u64).cast(), 8)
            .build()
            .user_data(USER_DATA_WAKEUP);
        // SAFETY: `wake_buf` is boxed and owned by the ring, and close drains
        // the ring before it is dropped.
        unsafe { self.push(&entry)? };
        self.wake_armed = true;
        Ok(())
    }

    pub fn is_wake_armed(&self) -> bool {
        self.wake_armed
    }

    /// In a forked child: give up the parent's ring without touching it.
    /// The ring is `DONTFORK`, so its mappings were not inherited and their
    /// addresses may belong to a ring of the child's own by now: unmapping
    /// them (what dropping the crate's `IoUring` does) would pull that ring
    /// out from under it. Only our copy of the descriptor is closed.
    pub fn forget_in_child(self) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.uring);
        let Ring { uring, .. } = self;
        std::mem::forget(uring);
        // SAFETY: `fd` is this process's copy of the ring descriptor, which
        // nothing else owns now that the `IoUring` is forgotten.
        unsafe { libc::close(fd) };
    }

    /// Close the ring while the kernel may still complete the wake-up read:
    /// its 8-byte target is leaked rather than freed. Closing the descriptor
    /// makes the kernel cancel what is left; it never needs our mappings.
    pub fn close_leaking_wake_target(self) {
        let Ring { uring, wake_buf, .. } = self;
        Box::leak(wake_buf);
        drop(uring);
    }

    /// Ask the kernel to cancel the op with `user_data`.
    pub fn cancel(&mut self, user_data: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data).build().user_data(USER_DATA_CANCEL);
        // SAFETY: a cancel request points at no memory.
        unsafe { self.push(&entry) }
    }

    /// Block until at least one completion, or `timeout`. Runs without the GVL:
    /// touches nothing but the ring. ETIME and EBUSY just return; EINTR (a
    /// signal, before anything completed) returns an `Interrupted` error.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.uring.submit_and_wait(1),
            Some(timeout) => {
                let ts = types::Timespec::from(timeout);
                if self.ext_arg {
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.uring.submitter().submit_with_args(1, &args)
                } else {
                    *self.timeout = ts;
                    // Completes after the first other completion, or on expiry.
                    let entry = opcode::Timeout::new(&*self.timeout).count(1).build().user_data(USER_DATA_TIMEOUT);
                    // SAFETY: the kernel copies the timespec when the SQE is submitted,
                    // which happens in the enter below; the box outlives it anyway.
                    unsafe { self.push(&entry)? };
                    self.uring.submit_and_wait(1)
                }
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EBUSY) | Some(libc::EAGAIN) => Ok(()),
                _ => Err(error),
            },
        }
    }

    /// Hand every op completion to `on_op(user_data, result)`; handle
    /// sentinels here. Recovers from a CQ overflow by entering again, and
    /// reports lost completions (kernels without NODROP) as an error.
    pub fn reap(&mut self, mut on_op: impl FnMut(u64, i32)) -> io::Result<usize> {
        let mut count = 0;
        loop {
            let mut cq = self.uring.completion();
            for cqe in &mut cq {
                count += 1;
                match cqe.user_data() {
                    USER_DATA_WAKEUP => self.wake_armed = false,
                    USER_DATA_CANCEL | USER_DATA_TIMEOUT => {}
                    user_data => on_op(user_data, cqe.result()),
                }
            }
            let overflow = cq.overflow();
            drop(cq);
            if overflow != self.overflow_seen && !self.nodrop {
                self.overflow_seen = overflow;
                return Err(io::Error::other("io_uring completion queue overflowed: completions were lost"));
            }
            if !self.uring.submission().cq_overflow() {
                return Ok(count);
            }
            // The kernel holds completions back until we enter again.
            match self.uring.submit() {
                Ok(_) => {}
                Err(error)
                    if matches!(error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN) | Some(libc::EINTR)) => {}
                Err(error) => return Err(error),
            }
        }
    }
}
