//! The one routine that parks a fiber on a kernel operation, and its cleanup
//! when the fiber comes back without the completion (STYLE.md section 3.2).

use io_uring::squeue;
use magnus::{Error, Ruby, Value};

use crate::ruby::fiber;
use crate::uring::ring::INLINE_TAG;
use crate::uring::slots::{Lifecycle, OpHandle};
use crate::uring::{SlotRefs, URing};

/// What to do when the waiter leaves before its op completed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// The kernel writes no memory of ours (a poll): cancel and let the slot
    /// free itself when the completion arrives.
    Orphan,
    /// The kernel may write memory the slot does not own (the caller's
    /// buffer): cancel and wait until the op has completed before returning.
    Drain,
}

/// The op `complete_now` waits for. It needs no slot: nothing switches
/// fibers until it has completed (or the ring failed), so there is nobody
/// to resume, and nothing to mark that its caller does not hold. There is
/// at most one at a time: Ruby code that runs meanwhile (a TracePoint hook
/// on an exception being made) cannot start another.
#[derive(Clone, Copy, Default)]
pub struct Inline {
    /// How many inline ops this selector has started (their `user_data`).
    started: u64,
    /// The `user_data` of the one in progress (0: none), and its result
    /// once reaped.
    awaited: u64,
    result: Option<i32>,
}

impl Inline {
    /// Start the next op: its `user_data`; `None` while one is in progress.
    fn start(self) -> Option<(Inline, u64)> {
        if self.awaited != 0 {
            return None;
        }
        let user_data = INLINE_TAG | (self.started & !INLINE_TAG);
        Some((Inline { started: self.started.wrapping_add(1), awaited: user_data, result: None }, user_data))
    }

    /// The op in progress is over (a late completion of it is ignored).
    fn finish(self) -> Inline {
        Inline { awaited: 0, result: None, ..self }
    }

    /// Record a reaped completion (one given up on is ignored).
    pub fn completed(self, user_data: u64, result: i32) -> Inline {
        if user_data == self.awaited {
            Inline { result: Some(result), ..self }
        } else {
            self
        }
    }

    fn result(self, user_data: u64) -> Option<i32> {
        self.result.filter(|_| self.awaited == user_data)
    }
}

/// How the op ended for the waiter.
pub enum Parked {
    Completed {
        result: i32,
    },
    /// Resumed without its completion (the op was cancelled).
    NoEvent,
}

impl URing {
    /// Submit `entry` (built with the slot's `user_data`), switch to the loop,
    /// and return the op's result once the waiter is back. On any other
    /// return route the op is cancelled per `on_interrupt` before the error
    /// propagates, so no stale completion can ever resume the fiber.
    ///
    /// The SQE reaches the kernel before the switch: it names its descriptor
    /// by number, and the fibers that run next could close that number and
    /// open another file under it. The same enter runs the task work the
    /// submission caused, so the completions it made ready are reaped by the
    /// next `select` without another system call.
    ///
    /// # Safety
    /// Every pointer in the entry must stay valid until its completion: owned
    /// by `refs` (marked) or by the slot, or drained (`OnInterrupt::Drain`).
    pub unsafe fn park(
        &self,
        ruby: &Ruby,
        refs: SlotRefs,
        build: impl FnOnce(u64) -> squeue::Entry,
        on_interrupt: OnInterrupt,
    ) -> Result<Parked, Error> {
        self.core.check_owner(ruby)?;
        let loop_fiber = self.core.loop_to_park_on(ruby)?;
        let handle = self.slots.borrow_mut().insert(refs);
        let entry = build(handle.user_data());
        // SAFETY: forwarded from the caller's contract.
        if let Err((error, pushed)) = unsafe { self.push_and_submit(ruby, &entry) } {
            if pushed {
                self.abandon(ruby, handle, OnInterrupt::Drain);
            } else {
                // The kernel never saw it: the slot is simply freed.
                self.slots.borrow_mut().discard(handle);
            }
            return Err(error);
        }

        let switched = fiber::transfer(loop_fiber, &[]);

        // Bound first: a scrutinee's borrow would last through the arms.
        let taken = self.slots.borrow_mut().take_completed(handle);
        match taken {
            // The exception wins even if the op completed (as an interrupted
            // blocking call would): the slot is already free.
            Some(result) => switched.map(|_| Parked::Completed { result }),
            None => self.left_early(ruby, handle, on_interrupt, switched),
        }
    }

    /// The waiter is back without its completion: cancel the op (see
    /// `abandon`), then the exception, or what a drained op ended with.
    #[cold]
    #[inline(never)]
    fn left_early(
        &self,
        ruby: &Ruby,
        handle: OpHandle,
        on_interrupt: OnInterrupt,
        switched: Result<Value, Error>,
    ) -> Result<Parked, Error> {
        let drained = self.abandon(ruby, handle, on_interrupt);
        match (switched, drained) {
            (Err(error), _) => Err(error),
            // Resumed by hand, but the drained op had completed.
            (Ok(_), Some(result)) if result != -libc::ECANCELED => Ok(Parked::Completed { result }),
            (Ok(_), _) => Ok(Parked::NoEvent),
        }
    }

    /// Submit `entry` at once and wait for its completion without switching
    /// fibers (`io_close`, which the kernel runs inline, and an attempt that
    /// may not wait on a file). `buffer` is the buffer the op uses, if any:
    /// should the ring fail before the op completes, it is kept lent for good.
    ///
    /// # Safety
    /// As `park`. The op has no slot: the caller's frames hold what it uses.
    pub unsafe fn complete_now(
        &self,
        ruby: &Ruby,
        buffer: Option<Value>,
        build: impl FnOnce(u64) -> squeue::Entry,
    ) -> Result<i32, Error> {
        self.core.check_owner(ruby)?;
        let Some((inline, user_data)) = self.inline.get().start() else {
            return Err(crate::ruby::error::runtime_error(
                ruby,
                "selector is completing another operation: code run meanwhile cannot start one",
            ));
        };
        self.inline.set(inline);
        // SAFETY: forwarded from the caller's contract.
        let result = unsafe { self.run_inline(ruby, user_data, build) };
        self.inline.set(self.inline.get().finish());
        match result {
            Ok(result) => Ok(result),
            Err((error, in_flight)) => {
                if in_flight {
                    // Only when the ring failed: the kernel may still use the buffer.
                    if let Some(buffer) = buffer {
                        crate::ruby::buffer::keep_lent_forever(buffer);
                    }
                }
                Err(error)
            }
        }
    }

    /// `complete_now`'s op, started: push, submit, wait. The result wins over
    /// an error met on the way; an error says whether the op may still be in
    /// flight.
    ///
    /// # Safety
    /// As `complete_now`.
    unsafe fn run_inline(
        &self,
        ruby: &Ruby,
        user_data: u64,
        build: impl FnOnce(u64) -> squeue::Entry,
    ) -> Result<i32, (Error, bool)> {
        // SAFETY: forwarded from the caller's contract. If it fails, the
        // kernel never saw the entry.
        unsafe { self.push_sqe(ruby, &build(user_data)) }.map_err(|error| (error, false))?;
        let submitted = self.submit_now(ruby);
        self.wait_until(ruby, || self.inline.get().result(user_data).is_some());
        match self.inline.get().result(user_data) {
            Some(result) => Ok(result),
            None => {
                let error = submitted.err().unwrap_or_else(|| {
                    crate::ruby::error::io_error(ruby, "selector closed while an operation was in flight")
                });
                Err((error, true))
            }
        }
    }

    /// Push `entry` and submit it: in one borrow of the ring when it has
    /// room and the kernel takes it (the usual case), otherwise through the
    /// loops that reap to make room. The error says whether the entry was
    /// pushed (and may reach the kernel).
    ///
    /// # Safety
    /// As `park`.
    unsafe fn push_and_submit(&self, ruby: &Ruby, entry: &squeue::Entry) -> Result<(), (Error, bool)> {
        // SAFETY: forwarded from the caller's contract.
        let first = self.with_ring(ruby, |ring| unsafe { ring.push_and_submit(entry) });
        match first {
            Ok(Ok(())) => return Ok(()),
            // Pushed, not all submitted (a short submit, the kernel pushed
            // back, a signal): below.
            Ok(Err(true)) => {}
            // Not pushed (the SQ is full, or the selector is closed): the
            // general path makes room by reaping, or says what is wrong.
            // SAFETY: forwarded from the caller's contract.
            _ => unsafe { self.push_sqe(ruby, entry) }.map_err(|error| (error, false))?,
        }
        self.submit_now(ruby).map_err(|error| (error, true))
    }

    /// Cancel an op whose waiter is leaving without its completion. With
    /// `Drain`, returns the op's result if it completed after all.
    fn abandon(&self, ruby: &Ruby, handle: OpHandle, on_interrupt: OnInterrupt) -> Option<i32> {
        let user_data = handle.user_data();
        let cancelled = self.with_ring(ruby, |ring| ring.cancel(user_data));
        match on_interrupt {
            OnInterrupt::Orphan => {
                self.slots.borrow_mut().orphan(handle, |refs| {
                    refs.fiber = None;
                    refs.io = None;
                    refs.buffer = None;
                });
                None
            }
            OnInterrupt::Drain => {
                if matches!(cancelled, Ok(Ok(()))) {
                    let _ = self.submit_now(ruby);
                }
                self.drain(ruby, handle)
            }
        }
    }

    /// Wait up to 100 ms for a completion, without the GVL unless an
    /// interrupt is pending (which would end a GVL-free wait at once, over
    /// and over): a cancelled op normally completes at once, but one the
    /// kernel cannot cancel must not stop every other thread meanwhile.
    fn wait_a_little(&self, ruby: &Ruby) -> Result<std::io::Result<()>, Error> {
        let step = Some(std::time::Duration::from_millis(100));
        self.with_ring(ruby, |ring| match self.core.without_gvl(|| ring.wait(step)) {
            Some(waited) => waited,
            None => ring.wait(step),
        })
    }

    /// Wait (a cancelled op completes promptly) until the
    /// op behind `handle` has completed, recording other completions without
    /// resuming anybody, then free its slot.
    fn drain(&self, ruby: &Ruby, handle: OpHandle) -> Option<i32> {
        self.wait_until(ruby, || self.slots.borrow().state(handle) != Lifecycle::Pending);
        let mut slots = self.slots.borrow_mut();
        let taken = slots.take_completed(handle);
        if taken.is_none() {
            // Only when the ring failed: keep the memory owned until the end,
            // and the buffer lent for good, although its call returns.
            slots.orphan(handle, |refs| {
                if let Some(buffer) = refs.buffer {
                    crate::ruby::buffer::keep_lent_forever(ruby.get_inner(buffer));
                }
            });
        }
        taken
    }

    /// Reap, and wait for completions, recording them without resuming
    /// anybody, until `done` (or until the ring fails: nothing will
    /// complete any more).
    fn wait_until(&self, ruby: &Ruby, done: impl Fn() -> bool) {
        let _ = self.reap(ruby);
        while !done() {
            let waited = self.wait_a_little(ruby);
            let waited = match waited {
                // A signal: the op is still in flight; go on waiting.
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => Ok(Ok(())),
                other => other,
            };
            if !matches!(waited, Ok(Ok(()))) || self.reap(ruby).is_err() {
                // The ring is gone or failing: nothing will complete any more.
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_result_is_taken_only_for_the_op_awaited() {
        let (first, first_data) = Inline::default().start().unwrap();
        assert_eq!(first.result(first_data), None);
        // While one is in progress, no other starts.
        assert!(first.start().is_none());
        // The first op is given up on (its ring failed); the next one starts.
        let (second, second_data) = first.finish().start().unwrap();
        assert_ne!(first_data, second_data);
        assert_eq!(second_data & INLINE_TAG, INLINE_TAG);
        // The first op's late completion is not the second's result.
        let second = second.completed(first_data, 7);
        assert_eq!(second.result(second_data), None);
        assert_eq!(second.result(first_data), None);
        let second = second.completed(second_data, 3);
        assert_eq!(second.result(second_data), Some(3));
        // Nor does a result outlive the op it belongs to.
        let (third, third_data) = second.finish().start().unwrap();
        assert_eq!(third.result(third_data), None);
        assert_eq!(third.finish().completed(third_data, 1).result(third_data), None);
    }

    #[test]
    fn inline_user_data_never_decodes_as_a_slot() {
        let (_, user_data) = Inline { started: u64::MAX, ..Inline::default() }.start().unwrap();
        assert_eq!(user_data & INLINE_TAG, INLINE_TAG);
        assert!(OpHandle::decode(user_data).is_none());
    }
}
