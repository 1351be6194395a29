//! A GC root for what the kernel may still use after the Ruby objects that
//! lent it have become unreachable.
//!
//! A slot of the selector marks its op's fiber and buffer, but the selector
//! itself can die in the same GC cycle as they do, and the sweep frees
//! objects in no particular order: the kernel could write into a buffer (or
//! a String on a parked fiber's stack) freed a moment before the selector's
//! `Drop` cancels the op. So every op that lends memory also pins its fiber
//! and buffer here, in a root that does not depend on the selector, until
//! its final completion is reaped. If the completion can never be observed
//! (the selector is torn down on a thread that may not enter the ring), the
//! pin is leaked on purpose: a leak, never a kernel write into freed memory.
//!
//! Everything here runs with the GVL held (or inside the GC, which holds it),
//! so the mutex is never contended; it is there to make the statics `Sync`.

use std::sync::{Mutex, MutexGuard, Once};

use magnus::{
    gc::Marker, prelude::*, typed_data::DataTypeFunctions, value::Opaque, Error, RModule, Ruby, TypedData, Value,
};

struct Table {
    entries: Vec<Option<[Opaque<Value>; 2]>>,
    free: Vec<usize>,
}

static TABLE: Mutex<Table> = Mutex::new(Table { entries: Vec::new(), free: Vec::new() });

fn table() -> MutexGuard<'static, Table> {
    // A panic while the lock was held cannot leave the table inconsistent
    // (every update is a single assignment), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps two values alive until dropped. Dropping makes no Ruby call, so it
/// may happen inside the GC (a selector freed with ops in flight).
pub struct Pin(usize);

impl Pin {
    pub fn new(values: [Value; 2]) -> Pin {
        let mut table = table();
        let entry = Some(values.map(Opaque::from));
        match table.free.pop() {
            Some(index) => {
                table.entries[index] = entry;
                Pin(index)
            }
            None => {
                table.entries.push(entry);
                Pin(table.entries.len() - 1)
            }
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut table = table();
        table.entries[self.0] = None;
        table.free.push(self.0);
    }
}

/// The object registered as a mark root: marking it marks every pin.
#[derive(TypedData)]
#[magnus(class = "IO::Event::Selector::Pins", free_immediately, mark)]
struct Root;

impl DataTypeFunctions for Root {
    fn mark(&self, marker: &Marker) {
        // The lock is only ever held for a few Rust statements that cannot
        // allocate, so the GC can never find it taken.
        let Ok(table) = TABLE.try_lock() else {
            eprintln!("io-event-uring: the pin table was locked during GC");
            std::process::abort();
        };
        for values in table.entries.iter().flatten() {
            for value in values {
                marker.mark(*value);
            }
        }
        super::buffer::mark_lent(marker);
    }
}

/// Register the root (once per process). Its class is a private constant of
/// `selector_module`, with no methods.
pub fn init(ruby: &Ruby, selector_module: RModule) -> Result<(), Error> {
    static ONCE: Once = Once::new();
    let class = selector_module.define_class("Pins", ruby.class_object())?;
    class.undef_default_alloc_func();
    let _: Value = selector_module.funcall("private_constant", (ruby.to_symbol("Pins"),))?;
    ONCE.call_once(|| ruby.gc_register_mark_object(ruby.obj_wrap(Root)));
    Ok(())
}
