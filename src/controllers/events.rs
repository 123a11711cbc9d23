//! Kubernetes events about the resources the controllers reconcile.

use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType};
use tracing::debug;

use crate::controllers::context::Context;

/// Publish a Kubernetes event about `obj`; a failure to publish is only logged (events are help,
/// not state).
pub async fn publish<K>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        debug!(error = %e, "could not publish event");
    }
}
