//! The operator under exactly the RBAC the Helm chart renders (every end-to-end test runs that
//! way; see `tests/support`). Here one verb is taken away and the operator fails, saying which
//! permission it lacks: the chart's rules are necessary, not just sufficient.

mod support;

use std::time::Duration;

use entra_emulator::EmulatorConfig;
use entra_operator::api::AppRegistration;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use support::{Harness, chart_rbac};

const NS: &str = "default";

/// The chart's RBAC with `verb` removed from the ClusterRole's rule for `resource`.
fn without(resource: &str, verb: &str) -> Vec<Value> {
    let mut rbac = chart_rbac();
    let role = rbac
        .iter_mut()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("the chart renders a ClusterRole");
    let mut removed = false;
    for rule in role["rules"].as_array_mut().unwrap() {
        if rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == resource)
        {
            let verbs = rule["verbs"].as_array_mut().unwrap();
            let before = verbs.len();
            verbs.retain(|v| v != verb);
            removed |= verbs.len() < before;
        }
    }
    assert!(removed, "the chart grants {verb} on {resource}");
    rbac
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_patch_on_secrets_the_operator_fails_and_names_the_permission() {
    let mut h =
        Harness::start_with_rbac(EmulatorConfig::default(), None, without("secrets", "patch"))
            .await;
    h.start_controllers();
    h.apply(json!({
        "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
        "metadata": {"name": "reports", "namespace": NS},
        "spec": {"displayName": "Reports",
                 "credentials": {"passwords": [{"secretName": "reports-credentials"}]}}
    }))
    .await;
    let message = h
        .wait_for(
            "Ready=False naming the missing permission",
            Duration::from_secs(30),
            || async {
                let obj = h.api::<AppRegistration>(NS).get("reports").await.ok()?;
                let ready = obj.status?.conditions.get("Ready")?.clone();
                (ready.status == "False" && ready.message.contains("forbidden"))
                    .then_some(ready.message)
            },
        )
        .await;
    assert!(
        message.contains(r#"cannot patch resource "secrets""#),
        "{message}"
    );
    assert!(
        h.api::<Secret>(NS)
            .get_opt("reports-credentials")
            .await
            .unwrap()
            .is_none(),
        "no Secret without the permission to write it"
    );
    h.stop_controllers().await;
}
