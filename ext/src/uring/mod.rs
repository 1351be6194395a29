//! `IO::Event::Selector::URing`: the Ruby class and its methods (argument
//! parsing only; the work is in `select.rs` and `ops/`).

mod ops;
pub mod ring;
mod select;
pub mod slots;
mod submit;
mod teardown;

use crate::ruby::receiver::This;
use std::cell::{Cell, RefCell};

use magnus::{
    function, gc::Marker, method, prelude::*, typed_data::DataTypeFunctions, value::Opaque, Error, RModule, Ruby,
    TypedData, Value,
};

use self::ring::Ring;
use self::slots::Slots;
use crate::ruby::error;
use crate::selector::{Backend, Core};

/// What a slot keeps alive (marked) for the life of its kernel operation.
#[derive(Default)]
pub struct SlotRefs {
    fiber: Option<Opaque<Value>>,
    io: Option<Opaque<Value>>,
    buffer: Option<Opaque<Value>>,
    /// Memory or descriptors the kernel uses that the slot owns: freed only
    /// when the final completion is reaped.
    payload: Option<Payload>,
    /// For ops that lend the caller's memory: a GC root for the fiber and
    /// buffer, independent of the selector (see `ruby/pins.rs`). Held for
    /// its `Drop`.
    #[allow(dead_code)]
    pin: Option<crate::ruby::pins::Pin>,
}

impl SlotRefs {
    /// Whether the op lends the caller's memory (a read or a write).
    fn lends_memory(&self) -> bool {
        self.pin.is_some()
    }
}

pub enum Payload {
    /// A pidfd being polled; closed when the slot is freed.
    PidFd(#[allow(dead_code)] std::os::fd::OwnedFd),
}

#[derive(TypedData)]
#[magnus(class = "IO::Event::Selector::URing", free_immediately, size, mark)]
pub struct URing {
    core: Core,
    /// `None` once closed. Holds no Ruby values, so it may stay borrowed
    /// while the GVL is released.
    ring: RefCell<Option<Ring>>,
    /// The op table. Never borrowed across a fiber switch or a Ruby call.
    slots: RefCell<Slots<SlotRefs>>,
    /// The op `complete_now` waits for (ops::park::Inline).
    inline: Cell<ops::park::Inline>,
    /// How attempts that may not wait reach each descriptor, and which
    /// descriptors are files (see `ops::rw`); borrowed for single look-ups
    /// only.
    routes: RefCell<crate::epoll::nonblock::Routes>,
}

impl Backend for URing {
    fn core(&self) -> &Core {
        &self.core
    }
}

impl DataTypeFunctions for URing {
    fn mark(&self, marker: &Marker) {
        self.core.mark(marker);
        {
            let slots = error::borrow_for_mark(&self.slots);
            for refs in slots.waiting_refs() {
                for value in [refs.fiber, refs.io, refs.buffer].into_iter().flatten() {
                    marker.mark(value);
                }
            }
        }
    }
}

impl Drop for URing {
    fn drop(&mut self) {
        let giver = self.giver();
        if let Some(ring) = self.ring.get_mut().take() {
            teardown::teardown(ring, self.slots.get_mut(), giver);
        }
    }
}

impl URing {
    fn new(ruby: &Ruby, loop_fiber: Value) -> Result<URing, Error> {
        let core = Core::new(ruby, loop_fiber)?;
        let legacy = std::env::var_os("IO_EVENT_URING_LEGACY").is_some_and(|v| !v.is_empty() && v != "0");
        let ring = Ring::new(ring::ENTRIES, core.interrupt().fd(), legacy)
            .map_err(|e| error::from_io(ruby, e, "io_uring_setup"))?;
        Ok(URing {
            core,
            ring: RefCell::new(Some(ring)),
            slots: RefCell::new(Slots::default()),
            inline: Cell::default(),
            routes: RefCell::default(),
        })
    }

    fn closed_p(rb_self: This<Self>) -> bool {
        rb_self.is_closed()
    }

    fn is_closed(&self) -> bool {
        // Borrowed: blocked in `select` on the owner thread, so open.
        self.core.is_forked() || self.ring.try_borrow().is_ok_and(|ring| ring.is_none())
    }

    /// Who would be giving the ring up if it were closed now.
    fn giver(&self) -> teardown::Giver {
        if self.core.is_forked() {
            teardown::Giver::ForkedChild
        } else if self.core.is_owner_thread() {
            teardown::Giver::Owner
        } else {
            teardown::Giver::OtherThread
        }
    }

    /// Release the ring and the wake-up eventfd (idempotent). Refused while
    /// a `select` on the owner thread is blocked (the ring is borrowed).
    fn close(ruby: &Ruby, rb_self: This<Self>) -> Result<(), Error> {
        let Ok(mut ring) = rb_self.ring.try_borrow_mut() else {
            if rb_self.core.is_forked() {
                // Borrowed by a `select` of the parent's thread, which does
                // not exist here: `Drop` forgets the ring (it needs no borrow).
                rb_self.core.interrupt().close();
                return Ok(());
            }
            return Err(in_use(ruby));
        };
        let giver = rb_self.giver();
        if giver == teardown::Giver::OtherThread && rb_self.slots.borrow().in_flight_refs().any(SlotRefs::lends_memory)
        {
            // Only the owner can wait for the kernel to give the memory
            // back, and its fibers could be resumed after we had given up.
            return Err(error::runtime_error(
                ruby,
                "selector has reads or writes in flight: close it on the thread that created it",
            ));
        }
        if let Some(ring) = ring.take() {
            teardown::teardown(ring, &mut rb_self.slots.borrow_mut(), giver);
        }
        rb_self.core.interrupt().close();
        Ok(())
    }

    /// "Deferred", "Cooperative", "SubmitAll" or "Plain": the setup flags in use,
    /// and whether the wait uses EXT_ARG. For tests and diagnostics.
    fn features(ruby: &Ruby, rb_self: This<Self>) -> Result<Value, Error> {
        let features = {
            let ring = rb_self.ring.try_borrow().map_err(|_| in_use(ruby))?;
            let ring = ring.as_ref().ok_or_else(|| error::selector_closed(ruby, false))?;
            (ring.setup(), ring.has_ext_arg())
        };
        let (setup, ext_arg) = features;
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("setup"), format!("{setup:?}"))?;
        hash.aset(ruby.to_symbol("ext_arg"), ext_arg)?;
        Ok(hash.as_value())
    }
}

/// The ring is borrowed by a `select` blocked on the owner thread.
fn in_use(ruby: &Ruby) -> Error {
    error::runtime_error(ruby, "selector is in use by a select on another thread")
}

/// Whether a ring can really be made here (stepping down through the flags).
fn probe() -> std::io::Result<()> {
    let interrupt = crate::selector::interrupt::Interrupt::new()?;
    Ring::new(4, interrupt.fd(), false).map(drop)
}

pub fn init(ruby: &Ruby, selector_module: RModule) -> Result<(), Error> {
    if std::env::var_os("IO_EVENT_URING_DISABLE").is_some_and(|v| !v.is_empty() && v != "0") {
        return Ok(());
    }
    if let Err(error) = probe() {
        // One line, then EPoll takes over as the default.
        error::warn(&format!("io-event-uring: io_uring is not available ({error}), using EPoll"));
        return Ok(());
    }
    let class = selector_module.define_class("URing", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(URing::new, 1))?;
    // Resolve the class magnus looks up lazily now, at load, with one thread
    // and the require lock held: resolving it later calls `const_get`, which
    // can switch threads inside a `Once` another thread may then wait on
    // while holding the GVL (a deadlock).
    let _ = <URing as TypedData>::class(ruby);
    crate::define_core_methods!(class, URing);
    class.define_method("select", select::select_method as unsafe extern "C" fn(Value, Value) -> Value)?;
    class.define_method("close", method!(URing::close, 0))?;
    class.define_method("closed?", method!(URing::closed_p, 0))?;
    class.define_method("features", method!(URing::features, 0))?;
    class.define_method("io_wait", crate::raw_method!(ops::poll::io_wait, 3))?;
    crate::define_io_methods!(class, URing);
    class.define_method("io_close", method!(ops::close::io_close, 1))?;
    class.define_method("process_wait", method!(ops::process::process_wait, 3))?;
    Ok(())
}
