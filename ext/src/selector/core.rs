//! `Core`: what every native selector shares. The loop fiber, the ready queue,
//! the `blocked` flag that `wakeup` reads from other threads, the wake-up
//! eventfd, the idle duration and the owner (process and thread).

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use magnus::{gc::Marker, prelude::*, rb_sys::AsRawValue, value::Opaque, Error, Ruby, Value};

use super::interrupt::Interrupt;
use super::ready_queue::ReadyQueue;
use crate::ruby::{error, fiber, thread};

static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn current_tid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Sets a flag for as long as it lives, and clears it when dropped, on every
/// route out (a panic re-raised from the GVL-free wait included).
struct Raised<'a>(&'a AtomicBool);

impl<'a> Raised<'a> {
    fn new(flag: &'a AtomicBool) -> Raised<'a> {
        flag.store(true, Ordering::SeqCst);
        Raised(flag)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Count forks so that "am I in a forked child?" is an atomic load, not a getpid(2).
pub fn track_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic counter.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

struct State {
    loop_fiber: Opaque<Value>,
    owner_thread: Opaque<Value>,
    ready: ReadyQueue<Opaque<Value>>,
}

pub struct Core {
    state: RefCell<State>,
    blocked: AtomicBool,
    /// Set only around the GVL-free wait itself (`without_gvl`): while it is,
    /// `close` from another thread is refused and the unblock function may
    /// write the eventfd.
    in_wait: AtomicBool,
    interrupt: Interrupt,
    fork_generation: u64,
    /// The owner's kernel thread id, for `Drop`, which may run on any
    /// thread and must not call Ruby to find out which.
    owner_tid: libc::pid_t,
    /// The owner thread (also marked, through `State::owner_thread`).
    owner_raw: rb_sys::VALUE,
    idle: Cell<f64>,
}

impl Core {
    pub fn new(ruby: &Ruby, loop_fiber: Value) -> Result<Core, Error> {
        let loop_fiber = fiber::check(ruby, loop_fiber)?;
        let interrupt = Interrupt::new().map_err(|e| error::from_io(ruby, e, "eventfd"))?;
        Ok(Core {
            state: RefCell::new(State {
                loop_fiber: loop_fiber.into(),
                owner_thread: ruby.thread_current().as_value().into(),
                ready: ReadyQueue::default(),
            }),
            blocked: AtomicBool::new(false),
            in_wait: AtomicBool::new(false),
            interrupt,
            fork_generation: FORKS.load(Ordering::Relaxed),
            owner_tid: current_tid(),
            owner_raw: ruby.thread_current().as_raw(),
            idle: Cell::new(0.0),
        })
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// True in a process forked after this selector was made.
    pub fn is_forked(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.fork_generation
    }

    /// Whether the current Ruby thread made the selector, and this is not a
    /// forked child (a pointer comparison; no borrow, no allocation).
    #[inline]
    pub fn is_owner_here(&self) -> bool {
        // SAFETY: rb_thread_current reads the current thread; we hold the GVL.
        !self.is_forked() && unsafe { rb_sys::rb_thread_current() } == self.owner_raw
    }

    /// Whether this runs on the thread that made the selector (no Ruby call:
    /// usable from `Drop`).
    pub fn is_owner_thread(&self) -> bool {
        current_tid() == self.owner_tid
    }

    /// Whether `wakeup` should signal: a `select` is blocking (or about to).
    /// (A forked child inherits the flag as the parent's thread had it.)
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst) && !self.is_forked()
    }

    /// Whether the owner thread is inside the GVL-free wait right now, where
    /// the unblock function may write the eventfd: `close` must wait for it
    /// to come back (another thread's `close` is refused meanwhile).
    pub fn is_waiting(&self) -> bool {
        self.in_wait.load(Ordering::SeqCst) && !self.is_forked()
    }

    /// Run `func` without the GVL (`nogvl::without_gvl`) with the eventfd as
    /// the wake-up, looked up now (a trap handler may have closed it since
    /// the caller last looked). `None` as `without_gvl`, and when closed.
    pub fn without_gvl<R>(&self, func: impl FnOnce() -> R) -> Option<R> {
        let wake_fd = self.interrupt.fd();
        if wake_fd < 0 {
            return None;
        }
        let _waiting = Raised::new(&self.in_wait);
        crate::ruby::nogvl::without_gvl(wake_fd, func)
    }

    /// Ring and epoll operations belong to the thread that made the selector.
    /// A forked child's copy raises `IOError` (closed) whichever thread asks:
    /// the owner thread does not exist in the child.
    #[inline]
    pub fn check_owner(&self, ruby: &Ruby) -> Result<(), Error> {
        if self.is_owner_here() {
            Ok(())
        } else {
            self.not_owner(ruby)
        }
    }

    #[cold]
    #[inline(never)]
    fn not_owner(&self, ruby: &Ruby) -> Result<(), Error> {
        if self.is_forked() {
            Err(error::selector_closed(ruby, true))
        } else {
            Err(error::runtime_error(ruby, "selector used from a thread other than the one that created it"))
        }
    }

    /// The loop fiber, to switch to from a fiber about to park. Parking the
    /// loop fiber itself would switch to itself and come straight back with
    /// nothing done: `RuntimeError` instead (as the Select selector does).
    pub fn loop_to_park_on(&self, ruby: &Ruby) -> Result<Value, Error> {
        let loop_fiber = self.loop_fiber(ruby);
        if loop_fiber.as_raw() == fiber::current(ruby).as_raw() {
            return Err(error::runtime_error(
                ruby,
                "cannot wait on the event loop fiber: it is what would resume the waiter",
            ));
        }
        Ok(loop_fiber)
    }

    /// Whether the current fiber may park (it is not the loop fiber).
    pub fn may_park(&self, ruby: &Ruby) -> bool {
        self.loop_fiber(ruby).as_raw() != fiber::current(ruby).as_raw()
    }

    pub fn loop_fiber(&self, ruby: &Ruby) -> Value {
        ruby.get_inner(self.state.borrow().loop_fiber)
    }

    /// From a user fiber: switch to the loop. On the loop itself: `nil`.
    pub fn transfer(&self, ruby: &Ruby) -> Result<Value, Error> {
        let loop_fiber = self.loop_fiber(ruby);
        if loop_fiber.as_raw() == fiber::current(ruby).as_raw() {
            return Ok(ruby.qnil().as_value());
        }
        fiber::transfer(loop_fiber, &[])
    }

    /// Queue the current fiber, run `switch`, and take our queue entry back
    /// out whichever way we come back.
    fn with_current_queued(&self, ruby: &Ruby, switch: impl FnOnce() -> Result<Value, Error>) -> Result<Value, Error> {
        let current = fiber::current(ruby);
        let token = self.state.borrow_mut().ready.push(current.into());
        let result = switch();
        self.state.borrow_mut().ready.remove(token);
        result
    }

    pub fn resume(&self, ruby: &Ruby, target: Value, args: &[Value]) -> Result<Value, Error> {
        let target = fiber::check(ruby, target)?;
        self.with_current_queued(ruby, || fiber::transfer(target, args))
    }

    pub fn raise(&self, ruby: &Ruby, target: Value, args: &[Value]) -> Result<Value, Error> {
        let target = fiber::check(ruby, target)?;
        self.with_current_queued(ruby, || fiber::raise(target, args))
    }

    pub fn push(&self, ruby: &Ruby, target: Value) -> Result<(), Error> {
        let target = fiber::check(ruby, target)?;
        self.state.borrow_mut().ready.push(target.into());
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        !self.state.borrow().ready.is_empty()
    }

    /// `is_ready`, or `None` while the state is borrowed (never panics).
    pub fn try_is_ready(&self) -> Option<bool> {
        self.state.try_borrow().ok().map(|state| !state.ready.is_empty())
    }

    /// Run every fiber queued before this call once, oldest first, skipping
    /// dead ones. Returns how many ran.
    #[inline]
    pub fn flush_ready(&self, ruby: &Ruby) -> Result<usize, Error> {
        if self.state.borrow().ready.is_empty() {
            return Ok(0);
        }
        self.flush_ready_now(ruby)
    }

    fn flush_ready_now(&self, ruby: &Ruby) -> Result<usize, Error> {
        let limit = self.state.borrow().ready.flush_limit();
        let mut ran = 0;
        loop {
            let next = self.state.borrow_mut().ready.pop_before(limit);
            let Some(next) = next else { break };
            if fiber::transfer_if_alive(ruby.get_inner(next))? {
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Block in `wait(remaining)`, which releases the GVL
    /// (`nogvl::without_gvl`), with `blocked` set so that `wakeup` from
    /// another thread knows to signal; records the idle time. `Ok(None)`
    /// when it did not wait to the end: a fiber became ready, an interrupt is
    /// queued for the thread (even a masked one: io-event returns 0 then too,
    /// and the interrupt is delivered when the mask ends), or one was served.
    ///
    /// `blocked` is set before anything here can let another thread run
    /// (the pending-interrupt query is a method call): a `push` + `wakeup`
    /// from that thread then writes the eventfd, so the wait ends at once,
    /// and the ready check right before the wait sees the push.
    ///
    /// `wait` returns `None` when Ruby had an interrupt flagged and did not
    /// block at all, and an `Interrupted` error when a signal ended the wait
    /// before Ruby flagged it. A flagged interrupt is served here (a thread
    /// switch, a trap handler, or `Thread#raise`/`#kill`, which propagate)
    /// with no borrow held and `blocked` clear (a handler may close the
    /// selector), and then `select` returns, as in io-event. A signal not
    /// flagged yet is waited for: Ruby flags it and calls the unblock
    /// function, which ends the next wait. `wait` must look the selector's
    /// state up afresh each time.
    pub fn blocking<T>(
        &self,
        ruby: &Ruby,
        timeout: Option<Duration>,
        mut wait: impl FnMut(Option<Duration>) -> Option<io::Result<T>>,
    ) -> Result<io::Result<Option<T>>, Error> {
        let start = Instant::now();
        if self.blocked.load(Ordering::SeqCst) {
            // A `select` of this selector run by Ruby code inside our own
            // (a trap handler served during the pending-interrupt query):
            // it must not wait, nor clear the outer one's `blocked`.
            return Ok(Ok(None));
        }
        let outcome = loop {
            let blocked = Raised::new(&self.blocked);
            let pending = thread::has_pending_interrupt(ruby);
            if !matches!(pending, Ok(false)) || self.is_ready() {
                drop(blocked);
                pending?;
                break Ok(None);
            }
            let remaining = timeout.map(|timeout| timeout.saturating_sub(start.elapsed()));
            let result = wait(remaining);
            drop(blocked);
            let served = match result {
                Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {
                    if !thread::is_interrupted(ruby) && remaining != Some(Duration::ZERO) {
                        continue;
                    }
                    None
                }
                Some(result) => Some(result),
                None => None,
            };
            if thread::is_interrupted(ruby) || served.is_none() {
                self.idle.set(start.elapsed().as_secs_f64());
                thread::check_interrupts()?;
            }
            break served.map_or(Ok(None), |result| result.map(Some));
        };
        self.idle.set(start.elapsed().as_secs_f64());
        Ok(outcome)
    }

    pub fn reset_idle(&self) {
        self.idle.set(0.0);
    }

    pub fn idle_duration(&self) -> f64 {
        self.idle.get()
    }

    /// From any thread: end a blocking `select`. False when not blocked.
    pub fn wakeup(&self) -> bool {
        if self.is_blocked() {
            self.interrupt.signal();
            true
        } else {
            false
        }
    }

    pub fn mark(&self, marker: &Marker) {
        {
            let state = error::borrow_for_mark(&self.state);
            marker.mark(state.loop_fiber);
            marker.mark(state.owner_thread);
            for value in state.ready.values() {
                marker.mark(*value);
            }
        }
    }
}
