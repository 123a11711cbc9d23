//! The readiness of a reflector store, shared by every reconcile that waits for it.

use kube::Resource;
use kube::runtime::reflector;

/// The readiness of a store, awaited by any number of reconciles at once. kube-runtime 5's
/// `Store::wait_until_ready` keeps a single waker (a oneshot receiver behind a mutex): of several
/// reconciles waiting at the same time only the last one polled is woken and the others hang for
/// good (a BankClient then never reconciled; the test below shows it). This waits once, in one
/// shared future that wakes every clone.
#[derive(Clone)]
pub struct StoreReady(futures::future::Shared<futures::future::BoxFuture<'static, bool>>);

impl StoreReady {
    pub fn new<K>(store: &reflector::Store<K>) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        use futures::FutureExt;
        let store = store.clone();
        StoreReady(
            async move { store.wait_until_ready().await.is_ok() }
                .boxed()
                .shared(),
        )
    }

    /// True once the store holds its first full list; false if its writer is gone.
    pub async fn wait(&self) -> bool {
        self.0.clone().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher;

    #[tokio::test]
    async fn every_concurrent_waiter_sees_the_store_ready() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let ready = StoreReady::new(&store);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let ready = ready.clone();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for w in waiters {
            let ready = tokio::time::timeout(std::time::Duration::from_secs(2), w).await;
            assert!(matches!(ready, Ok(Ok(true))), "a waiter was never woken");
        }
    }
}
