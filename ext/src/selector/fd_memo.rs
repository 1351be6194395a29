//! One answer per descriptor number, remembered with the address of the IO
//! object it was found for, so that it is asked of the kernel once, not on
//! every call: EPoll's route to a descriptor (`epoll::nonblock`), URing's
//! "is it a file that never waits for readiness" (`uring::ops::rw`).
//!
//! A remembered answer can be stale (the IO was reopened onto another file,
//! or a new IO took a freed one's address): each user says why that is
//! safe for its question.

use std::os::fd::RawFd;

/// Descriptors past this are asked every time.
const REMEMBERED: usize = 1 << 16;

pub struct FdMemo<T>(Vec<(u64, Option<T>)>);

impl<T> Default for FdMemo<T> {
    fn default() -> Self {
        FdMemo(Vec::new())
    }
}

impl<T: Copy> FdMemo<T> {
    /// The answer for `fd` through the IO object at `address`: the one
    /// remembered for both, or `ask(fd)`, then remembered.
    #[inline]
    pub fn get(&mut self, fd: RawFd, address: u64, ask: impl FnOnce(RawFd) -> T) -> T {
        if let Some(&(known, Some(answer))) = index(fd).and_then(|index| self.0.get(index)) {
            if known == address {
                return answer;
            }
        }
        self.ask(fd, address, ask)
    }

    #[cold]
    #[inline(never)]
    fn ask(&mut self, fd: RawFd, address: u64, ask: impl FnOnce(RawFd) -> T) -> T {
        let answer = ask(fd);
        self.set(fd, address, answer);
        answer
    }

    /// Remember `answer` for `fd` through the IO object at `address`.
    pub fn set(&mut self, fd: RawFd, address: u64, answer: T) {
        let Some(index) = index(fd) else {
            return;
        };
        if self.0.len() <= index {
            self.0.resize(index + 1, (0, None));
        }
        self.0[index] = (address, Some(answer));
    }
}

fn index(fd: RawFd) -> Option<usize> {
    usize::try_from(fd).ok().filter(|&index| index < REMEMBERED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_asked_once_per_descriptor_and_io() {
        let mut memo = FdMemo::default();
        let mut asked = 0;
        let mut ask = |fd: RawFd| {
            asked += 1;
            fd * 10
        };
        assert_eq!(memo.get(3, 1, &mut ask), 30);
        assert_eq!(memo.get(3, 1, &mut ask), 30);
        assert_eq!(memo.get(3, 2, &mut ask), 30, "another IO under the same number is asked about");
        assert_eq!(memo.get(-1, 1, &mut ask), -10);
        assert_eq!(memo.get(1 << 20, 1, &mut ask), 10 << 20);
        assert_eq!(memo.get(1 << 20, 1, &mut ask), 10 << 20, "numbers past the table are asked every time");
        assert_eq!(asked, 5);
        memo.set(3, 2, 7);
        assert_eq!(memo.get(3, 2, |_| unreachable!()), 7);
    }
}
