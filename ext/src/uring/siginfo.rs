//! Room for `IORING_OP_WAITID`'s `siginfo_t`, which the kernel writes.
//!
//! The slots come from a process-wide pool whose memory is never handed back
//! to malloc: a slot given back is filled with a poison pattern, and it is
//! only handed out again if the pattern is intact. Should the kernel ever
//! write a `siginfo_t` after we consider its op finished (a cancelled waitid
//! writes zeros; a path we did not foresee), it lands in the pool, not in
//! memory malloc has given to somebody else, and the damaged slot is
//! reported once and retired instead of reused.
//!
//! Everything here runs with the GVL held (or in the GC, which holds it);
//! the mutex makes the statics `Sync` and is never held across a call out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const WORDS: usize = 16;
const POISON: u64 = 0x5a5a_5a5a_5a5a_5a5a;

const _: () = assert!(std::mem::size_of::<libc::siginfo_t>() <= WORDS * 8);

struct Pool {
    /// Each slot is its own allocation, so its address never moves when
    /// the list grows (the kernel holds it).
    #[allow(clippy::vec_box)]
    slots: Vec<Box<[u64; WORDS]>>,
    /// Given-back slots (poisoned), with the pid each was last used for and
    /// how it was given back (`Release`), for the report.
    free: Vec<(usize, i32, Release)>,
}

/// How the last owner of a slot let it go (recorded for the report).
#[derive(Clone, Copy, Debug)]
pub enum Release {
    /// The waiter took its completion.
    Taken,
    /// The completion of an orphaned op arrived.
    Orphan,
    /// A ring given up after its ops completed (or a forked child's copy).
    Cleared,
    /// The op never reached the kernel.
    Discarded,
}

static RELEASE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Record how the slots about to be dropped are given back (called by the
/// slot table before it drops an op's payload; the GVL orders the calls).
pub fn releasing(how: Release) {
    RELEASE.store(how as u8, Ordering::Relaxed);
}

fn last_release() -> Release {
    match RELEASE.load(Ordering::Relaxed) {
        0 => Release::Taken,
        1 => Release::Orphan,
        2 => Release::Cleared,
        _ => Release::Discarded,
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool { slots: Vec::new(), free: Vec::new() });

/// Slots found written after they were given back (reported and retired).
static OVERWRITTEN: AtomicUsize = AtomicUsize::new(0);

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // Every update is a push or a pop: a poisoned lock is still consistent.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One slot, owned by an op's payload until its final completion.
pub struct SigInfo {
    index: usize,
    pid: i32,
}

impl SigInfo {
    /// A zeroed slot for a waitid on `pid`.
    pub fn new(pid: i32) -> SigInfo {
        let mut pool = pool();
        while let Some((index, last_pid, released)) = pool.free.pop() {
            let slot = &mut pool.slots[index];
            if slot.iter().all(|&word| word == POISON) {
                **slot = [0; WORDS];
                return SigInfo { index, pid };
            }
            // Retired: never handed out again.
            if OVERWRITTEN.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "io-event-uring: a waitid siginfo (pid {last_pid}, given back as {released:?}) was written \
                     after its op had finished; the slot is retired (words: {:x?})",
                    &slot[..4]
                );
            }
        }
        pool.slots.push(Box::new([0; WORDS]));
        SigInfo { index: pool.slots.len() - 1, pid }
    }

    /// The address the kernel writes to (valid for as long as the process:
    /// slots are never freed).
    pub fn as_ptr(&self) -> *mut libc::siginfo_t {
        let mut pool = pool();
        pool.slots[self.index].as_mut_ptr().cast()
    }

    /// Never give the slot back: the kernel may still write to it.
    pub fn retire(self) {
        std::mem::forget(self);
    }
}

impl Drop for SigInfo {
    fn drop(&mut self) {
        let mut pool = pool();
        *pool.slots[self.index] = [POISON; WORDS];
        let entry = (self.index, self.pid, last_release());
        pool.free.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_written_after_it_was_given_back_is_retired() {
        let first = SigInfo::new(1);
        let address = first.as_ptr();
        drop(first);
        // As the kernel would: write the siginfo of a finished op.
        // SAFETY: pool slots live for the whole process.
        unsafe { (*address).si_signo = 0 };
        let before = OVERWRITTEN.load(Ordering::Relaxed);
        let second = SigInfo::new(2);
        assert_ne!(second.as_ptr(), address, "the damaged slot must not be reused");
        assert_eq!(OVERWRITTEN.load(Ordering::Relaxed), before + 1);
        let reused = second.as_ptr();
        drop(second);
        let third = SigInfo::new(3);
        assert_eq!(third.as_ptr(), reused, "an intact slot is reused");
    }
}
