//! The readiness of a reflector store, shared by every reconcile that waits for it.

use tokio::sync::watch;

/// The readiness of a store, awaited by any number of reconciles at once.
///
/// kube-runtime 5's `Store::wait_until_ready` keeps a single waker (a oneshot receiver behind a
/// mutex): of several tasks waiting at the same time only one is woken and the others hang for
/// good. A kube `Controller` already waits that way on its own store, so a store shared by several
/// controllers (the AppRegistration watch every controller subscribes to) must not be waited on
/// through it a second time: a BankClient controller then never reconciled, depending on which
/// waiter was polled last. This readiness is set by the watch itself when the store has taken its
/// first full list ([`crate::controllers::wiring::SharedWatch::run`]), and wakes every waiter.
#[derive(Clone, Debug)]
pub struct StoreReady(watch::Receiver<bool>);

/// The watch's side of a [`StoreReady`]: marks the store ready.
#[derive(Debug)]
pub struct MarkReady(watch::Sender<bool>);

impl StoreReady {
    /// A readiness not yet reached, and the handle that reaches it.
    pub fn pair() -> (MarkReady, StoreReady) {
        let (tx, rx) = watch::channel(false);
        (MarkReady(tx), StoreReady(rx))
    }

    /// True once the store holds its first full list; false if its watch is gone before that.
    pub async fn wait(&self) -> bool {
        let mut rx = self.0.clone();
        rx.wait_for(|ready| *ready).await.is_ok()
    }
}

impl MarkReady {
    /// The store holds its first full list (again, after a relist: a no-op).
    pub fn mark(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_concurrent_waiter_sees_the_store_ready() {
        let (mark, ready) = StoreReady::pair();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let ready = ready.clone();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        mark.mark();
        for w in waiters {
            let ready = tokio::time::timeout(std::time::Duration::from_secs(2), w).await;
            assert!(matches!(ready, Ok(Ok(true))), "a waiter was never woken");
        }
        // A waiter that comes later returns at once.
        assert!(ready.wait().await);
    }

    #[tokio::test]
    async fn a_watch_gone_before_its_first_list_is_not_ready() {
        let (mark, ready) = StoreReady::pair();
        drop(mark);
        assert!(!ready.wait().await);
    }
}
