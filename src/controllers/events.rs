//! Kubernetes events about the resources the controllers reconcile, written by the context's
//! [`EventPublisher`](crate::controllers::event_publisher::EventPublisher).

use kube::Resource;
use kube::runtime::events::EventType;
use tracing::debug;

use crate::controllers::context::Context;

/// Publish a Kubernetes event about `obj`; a failure to publish is only logged (events are help,
/// not state).
pub async fn publish<K>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str)
where
    K: Resource<DynamicType = ()>,
{
    if let Err(e) = ctx
        .events
        .publish(&obj.object_ref(&()), type_, reason, note)
        .await
    {
        debug!(error = %e, "could not publish event");
    }
}
