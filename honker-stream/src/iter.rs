//! The iterator that both blocking receivers, [`Listener`](crate::Listener) and
//! [`Subscriber`](crate::Subscriber), hand out: items until a deadline, ending after an error.

use std::time::Instant;

use crate::error::Result;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Listener {}
    impl Sealed for crate::Subscriber {}
}

/// A blocking receiver: [`Listener`](crate::Listener) or [`Subscriber`](crate::Subscriber).
pub trait Receive: sealed::Sealed {
    /// What it hands out.
    type Item;
    /// The next item, blocking until one arrives; `None` at `deadline`.
    ///
    /// # Errors
    ///
    /// As the receiver's own `recv`.
    fn receive(&mut self, deadline: Option<Instant>) -> Result<Option<Self::Item>>;
}

/// Items of a [`Receive`]r, each waited for, until `deadline`; ends after yielding an error.
#[derive(Debug)]
pub struct Iter<'a, R> {
    receiver: &'a mut R,
    deadline: Option<Instant>,
    done: bool,
}

impl<'a, R: Receive> Iter<'a, R> {
    pub(crate) fn new(receiver: &'a mut R, deadline: Option<Instant>) -> Iter<'a, R> {
        Iter {
            receiver,
            deadline,
            done: false,
        }
    }
}

impl<R: Receive> Iterator for Iter<'_, R> {
    type Item = Result<R::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.receiver.receive(self.deadline).transpose();
        // `None` is the deadline and an error ends the iteration: either way, no more items.
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}
