//! A kube-rs `Controller` reconciling the toy CRD against the emulator, surviving dropped watches.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{finalizer, watcher};
use kube::{Resource, ResourceExt};

use serde_json::json;

struct Ctx {
    client: kube::Client,
    reconciles: AtomicUsize,
}

#[derive(Debug)]
struct ReconcileError(String);
impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ReconcileError {}

async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<Ctx>,
) -> Result<Action, finalizer::Error<ReconcileError>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = w.namespace().unwrap();
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, "test.example.com/cleanup", w, |event| async {
        match event {
            finalizer::Event::Apply(w) => {
                let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                let owner = w.controller_owner_ref(&()).unwrap();
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-size", w.name_any())),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    data: Some([("size".to_string(), w.spec.size.to_string())].into()),
                    ..Default::default()
                };
                cms.patch(&cm.metadata.name.clone().unwrap(), &PatchParams::apply("widget-ctl").force(), &Patch::Apply(&cm))
                    .await
                    .map_err(|e| ReconcileError(e.to_string()))?;
                let status = json!({"apiVersion": "test.example.com/v1", "kind": "Widget",
                    "status": {"observed": w.metadata.generation, "conditions": [{"type": "Ready", "status": "True"}]}});
                api.patch_status(&w.name_any(), &PatchParams::apply("widget-ctl").force(), &Patch::Apply(&status))
                    .await
                    .map_err(|e| ReconcileError(e.to_string()))?;
                Ok(Action::requeue(Duration::from_secs(300)))
            }
            finalizer::Event::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
}

fn error_policy(_: Arc<Widget>, _: &finalizer::Error<ReconcileError>, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_reconciles_and_survives_dropped_watches() {
    let (emu, client) = start().await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let widgets: Api<Widget> = Api::all(client.clone());
    let controller = Controller::new(widgets, watcher::Config::default())
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = &r {
                eprintln!("controller: {e:?}");
            }
        });
    let handle = tokio::spawn(controller);

    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("one", 2))
        .await
        .unwrap();
    eventually("status written", || {
        let api = api.clone();
        async move {
            api.get("one")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.observed == Some(1))
        }
    })
    .await;
    assert_eq!(
        cms.get("one-size").await.unwrap().data.unwrap()["size"],
        "2"
    );
    let w = api.get("one").await.unwrap();
    assert_eq!(w.finalizers(), ["test.example.com/cleanup"]);

    // Watches drop; the controller re-watches and still sees the next change.
    emu.drop_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 6}})),
    )
    .await
    .unwrap();
    eventually("second generation reconciled", || {
        let api = api.clone();
        async move {
            api.get("one")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.observed == Some(2))
        }
    })
    .await;
    assert_eq!(
        cms.get("one-size").await.unwrap().data.unwrap()["size"],
        "6"
    );

    // Injected write failures are retried by the error policy.
    emu.fail_next_writes("configmaps", 2, 500);
    emu.drop_watches();
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 8}})),
    )
    .await
    .unwrap();
    eventually("reconciled after injected failures", || {
        let cms = cms.clone();
        async move { cms.get("one-size").await.unwrap().data.unwrap()["size"] == "8" }
    })
    .await;

    // Deletion goes through the finalizer, then garbage collection removes the owned ConfigMap.
    api.delete("one", &Default::default()).await.unwrap();
    eventually("widget deleted", || {
        let api = api.clone();
        async move { api.get_opt("one").await.unwrap().is_none() }
    })
    .await;
    eventually("owned configmap collected", || {
        let cms = cms.clone();
        async move { cms.get_opt("one-size").await.unwrap().is_none() }
    })
    .await;
    assert!(ctx.reconciles.load(Ordering::SeqCst) >= 3);
    handle.abort();
}
