//! `IO::Event::Selector::EPoll`: the Ruby class, its state, and the methods
//! that need nothing but that state (`new`, `close`, `closed?`). Waiting and
//! I/O are in `ops.rs` (with `nonblock.rs` for the non-blocking system
//! calls), the loop step in `select.rs`, the bookkeeping of who waits on what
//! in `registry.rs` (and `waiters.rs`), and the epoll calls in `poller.rs`.

mod by_number;
pub(crate) mod nonblock;
mod ops;
mod poller;
pub mod registry;
mod select;
mod waiters;

use crate::ruby::receiver::This;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use magnus::{
    function, gc::Marker, method, prelude::*, rb_sys::AsRawValue, typed_data::DataTypeFunctions, value::Opaque, Error,
    RModule, Ruby, TypedData, Value,
};

use self::registry::{Interest, Op, Registry};
use crate::ruby::error;
use crate::selector::{Backend, Core};

/// What a waiter keeps alive (marked) while it waits.
pub struct WaiterRefs {
    fiber: Opaque<Value>,
    /// The IO waited on, so that a finaliser cannot close it under the wait.
    io: Option<Opaque<Value>>,
    /// A descriptor the wait owns (process_wait's pidfd). It lives in the
    /// registry rather than on the fiber's stack, so it is closed when the
    /// waiter's slot is freed, or when the selector is, even if the fiber is
    /// never resumed.
    owned: Option<OwnedFd>,
}

/// The IO object a waiter waits through, as the registry compares it (by
/// address) and keeps it (marked) while it vouches for a kept registration.
#[derive(Clone, Copy)]
pub struct Anchor {
    address: u64,
    io: Opaque<Value>,
}

impl Anchor {
    fn new(io: Value) -> Anchor {
        Anchor { address: io.as_raw(), io: io.into() }
    }
}

impl PartialEq for Anchor {
    fn eq(&self, other: &Anchor) -> bool {
        self.address == other.address
    }
}

#[derive(TypedData)]
#[magnus(class = "IO::Event::Selector::EPoll", free_immediately, size, mark)]
pub struct EPoll {
    core: Core,
    /// The epoll set; `None` once closed (dropping it closes the descriptor,
    /// which is also all `Drop` needs to do). Holds no Ruby values, so it may
    /// stay borrowed while the GVL is released.
    epoll: RefCell<Option<OwnedFd>>,
    /// Waiters by descriptor. Never borrowed across a fiber switch or a Ruby call.
    registry: RefCell<Registry<WaiterRefs, Anchor>>,
    /// How reads and writes reach each descriptor (see `nonblock.rs`).
    routes: RefCell<nonblock::Routes>,
}

impl Backend for EPoll {
    fn core(&self) -> &Core {
        &self.core
    }
}

impl DataTypeFunctions for EPoll {
    fn mark(&self, marker: &Marker) {
        self.core.mark(marker);
        {
            let registry = error::borrow_for_mark(&self.registry);
            for refs in registry.refs() {
                marker.mark(refs.fiber);
                if let Some(io) = refs.io {
                    marker.mark(io);
                }
            }
            for anchor in registry.anchors() {
                marker.mark(anchor.io);
            }
        }
    }
}

/// The epoll set as the registry reaches it. `None` (closed, or a forked
/// child, which shares the parent's set and must never change it): every
/// operation is a no-op.
pub struct Kernel(Option<RawFd>);

impl Interest for Kernel {
    fn ctl(&self, op: Op, fd: RawFd, mask: u32, data: u64) -> io::Result<()> {
        match self.0 {
            Some(epoll) => poller::ctl(epoll, op, fd, mask, data),
            None => Ok(()),
        }
    }
}

impl EPoll {
    fn new(ruby: &Ruby, loop_fiber: Value) -> Result<EPoll, Error> {
        let core = Core::new(ruby, loop_fiber)?;
        let epoll = new_set(core.interrupt().fd()).map_err(|e| error::from_io(ruby, e, "epoll"))?;
        Ok(EPoll {
            core,
            epoll: RefCell::new(Some(epoll)),
            registry: RefCell::new(Registry::default()),
            routes: RefCell::default(),
        })
    }

    /// Before each `epoll_wait`: bring the kernel in line with the waiters
    /// (`Registry::reconcile`), or, after an event from an entry we can no
    /// longer reach, move the waiters to a fresh set (`Registry::rebuild`);
    /// the old set, and the stale entry with it, is closed. If no fresh set
    /// can be made (descriptors exhausted), the old one stays and the next
    /// wait tries again.
    #[inline(always)]
    fn prepare(&self) {
        let kernel = self.kernel();
        let Kernel(Some(_)) = kernel else {
            return;
        };
        let mut registry = self.registry.borrow_mut();
        if registry.is_stale() {
            if let Ok(fresh) = new_set(self.core.interrupt().fd()) {
                registry.rebuild(&Kernel(Some(fresh.as_raw_fd())));
                *self.epoll.borrow_mut() = Some(fresh);
                return;
            }
        }
        registry.reconcile(&kernel);
    }

    /// The epoll set for the registry, or a no-op stand-in when closed/forked.
    #[inline]
    fn kernel(&self) -> Kernel {
        if self.core.is_forked() {
            return Kernel(None);
        }
        Kernel(self.epoll.borrow().as_ref().map(AsRawFd::as_raw_fd))
    }

    /// The epoll set, or `IOError` when the selector is closed (or this is a
    /// forked child: the set is the parent's).
    #[inline]
    fn open_kernel(&self, ruby: &Ruby) -> Result<Kernel, Error> {
        match self.kernel() {
            Kernel(None) => Err(self.not_open(ruby)),
            open => Ok(open),
        }
    }

    #[cold]
    #[inline(never)]
    fn not_open(&self, ruby: &Ruby) -> Error {
        error::selector_closed(ruby, self.core.is_forked())
    }

    fn closed_p(rb_self: This<Self>) -> bool {
        rb_self.is_closed()
    }

    fn is_closed(&self) -> bool {
        self.core.is_forked() || self.epoll.borrow().is_none()
    }

    /// Close the epoll set and the wake-up eventfd (idempotent). Parked
    /// fibers stay parked (and marked) until something resumes them; in a
    /// forked child this closes only the child's copies of the descriptors.
    /// Refused while a `select` is blocked (from another thread): it would
    /// sleep on in a set whose number could be reused meanwhile.
    fn close(ruby: &Ruby, rb_self: This<Self>) -> Result<(), Error> {
        if rb_self.core.is_waiting() {
            return Err(error::runtime_error(
                ruby,
                "cannot close a selector while it is blocked in select on another thread",
            ));
        }
        let closed = rb_self.epoll.borrow_mut().take();
        if closed.is_some() {
            let mut registry = rb_self.registry.borrow_mut();
            registry.detach();
            // Descriptors the waits own (pidfds) go with the selector: their
            // fibers are never resumed now.
            for refs in registry.refs_mut() {
                refs.owned = None;
            }
        }
        drop(closed);
        rb_self.core.interrupt().close();
        Ok(())
    }
}

/// A new epoll set with the wake-up eventfd in it. The eventfd stays
/// registered, level-triggered, for the life of the set; `select` reads it
/// empty whenever it reports.
fn new_set(wake_fd: RawFd) -> io::Result<OwnedFd> {
    let epoll = poller::create()?;
    poller::ctl(epoll.as_raw_fd(), Op::Add, wake_fd, libc::EPOLLIN as u32, registry::WAKEUP_DATA)?;
    Ok(epoll)
}

pub fn init(ruby: &Ruby, selector_module: RModule) -> Result<(), Error> {
    let class = selector_module.define_class("EPoll", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(EPoll::new, 1))?;
    // Resolved now, at load, for the reason given in `uring::init`.
    let _ = <EPoll as TypedData>::class(ruby);
    crate::define_core_methods!(class, EPoll);
    class.define_method("select", select::select_method as unsafe extern "C" fn(Value, Value) -> Value)?;
    class.define_method("close", method!(EPoll::close, 0))?;
    class.define_method("closed?", method!(EPoll::closed_p, 0))?;
    class.define_method("io_wait", crate::raw_method!(ops::io_wait, 3))?;
    crate::define_io_methods!(class, EPoll);
    class.define_method("io_close", method!(ops::io_close, 1))?;
    class.define_method("process_wait", method!(ops::process_wait, 3))?;
    Ok(())
}
