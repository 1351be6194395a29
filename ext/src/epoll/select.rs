//! `select` in two phases: collect epoll events into the registry (which only
//! records which waiters are ready), then resume those fibers with no borrow
//! held.

use crate::ruby::receiver::{call_with, This};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use magnus::{Error, Ruby, Value};

use super::poller;
use super::registry::WAKEUP_DATA;
use super::EPoll;
use crate::ruby::{error, fiber};
use crate::selector::ZERO;

/// Events taken per `epoll_wait`; more stay in the kernel for the next call.
const MAX_EVENTS: usize = 64;

impl EPoll {
    /// One `epoll_wait`: without blocking when `timeout_ms` is zero, otherwise
    /// without the GVL and with `blocked` set, so that `wakeup`, signals,
    /// `Thread#raise` and `Thread#kill` end it (through the eventfd).
    fn poll(
        &self,
        ruby: &Ruby,
        events: &mut poller::Events<MAX_EVENTS>,
        timeout_ms: Option<Duration>,
    ) -> Result<usize, Error> {
        if self.core.is_forked() {
            return Err(error::selector_closed(ruby, true));
        }
        self.prepare();
        let epoll_fd = || self.epoll.borrow().as_ref().map(AsRawFd::as_raw_fd);
        let Some(epoll) = epoll_fd() else {
            return Err(error::selector_closed(ruby, false));
        };
        let result = if timeout_ms == Some(Duration::ZERO) {
            match poller::wait(epoll, events, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
                other => other,
            }
        } else {
            // Looked up again before every wait: a trap handler served
            // between two waits may have closed the set (and its number may
            // name another file by now).
            self.core
                .blocking(ruby, timeout_ms, |remaining| match epoll_fd() {
                    Some(epoll) => self.core.without_gvl(|| poller::wait_for(epoll, &mut *events, remaining)),
                    None => Some(Ok(0)),
                })?
                .map(|count| count.unwrap_or(0))
        };
        result.map_err(|e| error::from_io(ruby, e, "epoll_wait"))
    }

    /// Record the events: ready waiters go on the registry's ready list; the
    /// wake-up eventfd is read empty.
    #[inline(always)]
    fn dispatch(&self, events: &[libc::epoll_event]) {
        let mut registry = self.registry.borrow_mut();
        for event in events {
            let (data, revents) = (event.u64, event.events);
            if data == WAKEUP_DATA {
                self.core.interrupt().clear();
            } else {
                registry.dispatch(data, revents);
            }
        }
    }

    /// Resume the fibers of ready waiters, oldest first; those made ready
    /// while this runs wait for the next `select`. Each fiber finds its own
    /// result in its slot. Returns how many were resumed.
    #[inline(always)]
    fn resume_ready(&self, ruby: &Ruby) -> Result<usize, Error> {
        let mut budget = self.registry.borrow().ready_len();
        let mut resumed = 0;
        loop {
            let next = self.registry.borrow_mut().next_ready(&mut budget).map(|(id, refs)| (id, refs.fiber));
            let Some((id, target)) = next else {
                return Ok(resumed);
            };
            if !fiber::transfer_if_alive(ruby.get_inner(target))? {
                // Nobody will ever take this slot: free it here.
                let taken = self.registry.borrow_mut().take(id);
                drop(taken);
                continue;
            }
            resumed += 1;
        }
    }

    /// Every `select`'s pass that does not wait, on the owner thread: run the
    /// fibers that were ready, collect events without blocking and resume
    /// their fibers. Returns how many of each ran. Inlined into both callers
    /// (as URing's).
    #[inline(always)]
    fn select_once(&self, ruby: &Ruby) -> Result<(usize, usize), Error> {
        self.open_kernel(ruby)?;
        self.core.reset_idle();
        let ran = self.core.flush_ready(ruby)?;
        Ok((ran, self.step(ruby, Some(Duration::ZERO))?))
    }

    /// Collect with `timeout_ms`, then resume.
    fn step(&self, ruby: &Ruby, timeout_ms: Option<Duration>) -> Result<usize, Error> {
        let mut events = poller::Events::new();
        self.poll(ruby, &mut events, timeout_ms)?;
        self.dispatch(events.filled());
        self.resume_ready(ruby)
    }
}

crate::define_select_entry!();

/// `select(0)` on the owner thread. With no fiber ready it makes its one
/// `epoll_wait` here, without any method glue: nothing found answers 0;
/// what was found is recorded and its fibers resumed (through `call_with`,
/// since fibers run). Otherwise the non-blocking pass runs without checking
/// the receiver and the thread again (a closed selector, a failed wait:
/// `select_once` makes the wait again and reports). Anything else goes
/// through `select`. Nothing here raises or panics but through the wrapped
/// calls (borrows are tried: a conflict is "not the quiet case").
///
/// # Safety
/// Called from `select_method` only, with its arguments.
#[inline(never)]
unsafe extern "C" fn select_zero(rb_self: Value, duration: Value) -> Value {
    if let Some(this) = This::<EPoll>::exact(rb_self) {
        if this.core.is_owner_here() {
            return match this.collect_quietly() {
                Some(0) => {
                    this.core.reset_idle();
                    // SAFETY: 0 is an immediate Integer.
                    unsafe { magnus::rb_sys::FromRawValue::from_raw(ZERO) }
                }
                // SAFETY: called by Ruby as the method, on its receiver.
                Some(_) => unsafe { select_collected(this) },
                // SAFETY: as above.
                None => unsafe { select_now(this) },
            };
        }
    }
    // SAFETY: called by Ruby as the method.
    unsafe { select_full(rb_self, duration) }
}

/// `select(0)` after `select_zero` collected events: resume their fibers,
/// as `select` would have (its ready queue was empty).
///
/// # Safety
/// Called from `select_zero` only, with its checked receiver.
#[inline(never)]
unsafe extern "C" fn select_collected(this: This<EPoll>) -> Value {
    // SAFETY: a method entry's callee; nothing here needs dropping.
    unsafe {
        call_with(this, |ruby, this| {
            this.core.reset_idle();
            this.resume_ready(ruby)
        })
    }
}

/// `select(0)` with fibers ready (or nothing collected quietly), on the
/// owner thread: the non-blocking pass. Like `select_collected`, a C
/// function, so that `select_zero` reaches it by a tail call (its frame,
/// with the event buffer, is gone while fibers run).
///
/// # Safety
/// Called from `select_zero` only, with its checked receiver.
#[inline(never)]
unsafe extern "C" fn select_now(this: This<EPoll>) -> Value {
    // SAFETY: a method entry's callee; nothing here needs dropping.
    unsafe { call_with(this, |ruby, this| this.select_once(ruby).map(|(_, resumed)| resumed)) }
}

impl EPoll {
    /// `select(0)`'s collection on the owner thread (the caller checks it,
    /// and so that this is not a forked child), when no fiber is ready and
    /// nothing is borrowed: one `epoll_wait` without blocking, its events
    /// recorded. Returns how many waiters are ready now, or `None` when this
    /// path does not apply (closed, something ready already, or the wait
    /// failed).
    fn collect_quietly(&self) -> Option<usize> {
        let idle = self.core.try_is_ready() == Some(false)
            && self.registry.try_borrow_mut().is_ok_and(|registry| registry.ready_len() == 0)
            && self.epoll.try_borrow_mut().is_ok_and(|epoll| epoll.is_some());
        if !idle {
            return None;
        }
        self.prepare();
        let epoll = self.epoll.borrow().as_ref().map(AsRawFd::as_raw_fd)?;
        let mut events = poller::Events::<MAX_EVENTS>::new();
        match poller::wait(epoll, &mut events, 0) {
            Ok(_) => {}
            // Nothing collected (a failed wait fills no slot); waiters that
            // `prepare` woke are still resumed, as the full path does.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        self.dispatch(events.filled());
        Some(self.registry.borrow().ready_len())
    }
}

/// Run the ready queue once; collect events without blocking and resume
/// their fibers; only if nothing ran and nothing is ready, block (without
/// the GVL) for `duration`, then resume what that collected. Returns the
/// number of waiters resumed.
pub fn select(ruby: &Ruby, rb_self: This<EPoll>, duration: Value) -> Result<usize, Error> {
    let timeout = crate::selector::duration(ruby, duration)?;
    rb_self.core.check_owner(ruby)?;
    let (ran, mut handled) = rb_self.select_once(ruby)?;
    let idle = ran == 0 && handled == 0 && !rb_self.core.is_ready() && rb_self.registry.borrow().ready_len() == 0;
    if idle && timeout != Some(Duration::ZERO) {
        handled = rb_self.step(ruby, timeout)?;
    }
    Ok(handled)
}
