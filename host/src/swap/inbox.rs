//! The way into a slot's thread from outside it (reloads, rollbacks, candidates): a weak
//! sender, replaced when the server's supervisor starts the thread again.

use parking_lot::Mutex;
use std::sync::Arc;

use tokio::sync::mpsc;

/// Where a slot's thread takes its orders; empty while the thread does not run. Weak, so
/// that it never keeps the thread's queue open when the server stops.
pub struct Inbox<T> {
    to: Arc<Mutex<Option<mpsc::WeakSender<T>>>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self {
            to: self.to.clone(),
        }
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self { to: Arc::default() }
    }
}

impl<T> Inbox<T> {
    /// From now on, orders go to `tx`'s queue.
    pub fn connect(&self, tx: &mpsc::Sender<T>) {
        *self.to.lock() = Some(tx.downgrade());
    }

    /// The thread's queue, while the thread runs.
    pub fn sender(&self) -> Option<mpsc::Sender<T>> {
        self.to.lock().as_ref()?.upgrade()
    }

    /// Sends `msg`; false when the thread does not run.
    pub async fn send(&self, msg: T) -> bool {
        match self.sender() {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_inbox_follows_the_thread_it_was_last_connected_to() {
        let inbox = Inbox::default();
        assert!(!inbox.send(1).await, "nothing connected");
        let (tx, mut rx) = mpsc::channel(1);
        inbox.connect(&tx);
        assert!(inbox.send(2).await);
        assert_eq!(rx.recv().await, Some(2));
        drop(tx);
        assert!(!inbox.send(3).await, "the thread's queue is gone");
        let (tx2, mut rx2) = mpsc::channel(1);
        inbox.connect(&tx2);
        assert!(inbox.send(4).await);
        assert_eq!(rx2.recv().await, Some(4));
    }
}
