//! What keeps the operator fast at scale, as behaviour: BankClient reconciles read the watches'
//! stores instead of listing the API server, the registry ConfigMap is written once per burst,
//! and a worker is not parked while Entra replicates a new object.

mod support;

use std::time::Duration;

use entra_operator::api::{AppRegistration, BankClient};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::Harness;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

fn cr(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn system_api() -> Value {
    cr(
        "AppRegistration",
        "api-system-integration",
        json!({
            "displayName": "BookMe API System Integration",
            "signInAudience": "AzureADMyOrg",
            "identifierUris": ["api://{appId}"],
            "api": {"requestedAccessTokenVersion": 2},
            "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}],
            "servicePrincipal": {"appRoleAssignmentRequired": true, "visibleToUsers": false}
        }),
    )
}

fn is_ready(conditions: Option<&entra_operator::api::Conditions>) -> bool {
    conditions
        .and_then(|c| c.get("Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Ready, and for its current generation.
fn settled_app(app: &AppRegistration) -> bool {
    app.status.as_ref().is_some_and(|s| {
        is_ready(Some(&s.conditions)) && s.observed_generation == app.metadata.generation
    })
}

async fn ready_bank_clients(h: &Harness) -> usize {
    h.api::<BankClient>(NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|bc| is_ready(bc.status.as_ref().map(|s| &s.conditions)))
        .count()
}

async fn registry_entries(h: &Harness) -> usize {
    h.api::<ConfigMap>(NS)
        .get_opt("bank-clients")
        .await
        .unwrap()
        .and_then(|cm| cm.data)
        .map(|d| d.len())
        .unwrap_or(0)
}

/// Each BankClient reconcile server-side applies its child AppRegistration once (a PATCH).
fn child_applies(h: &Harness) -> u64 {
    h.kube.request_count("patch", "appregistrations")
}

#[tokio::test]
async fn bank_client_reconciles_list_nothing_and_the_registry_is_written_once_per_burst() {
    const N: usize = 6;
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    for i in 0..N {
        h.apply(cr(
            "BankClient",
            &format!("bank-{i}"),
            json!({"bankId": format!("bank-{i}"), "api": {"appRef": {"name": "api-system-integration"}},
                   "secret": {"name": format!("bank-{i}-credentials")}}),
        ))
        .await;
    }
    h.wait_for("all BankClients Ready and registered", WAIT, || async {
        (ready_bank_clients(&h).await == N && registry_entries(&h).await == N).then_some(())
    })
    .await;
    // The watches list when they start (and this test's polling lists); the reconciles list
    // nothing.
    let lists = |h: &Harness| {
        h.kube.request_count("list", "bankclients")
            + h.kube.request_count("list", "appregistrations")
    };
    let after_start = lists(&h);
    let applies_before = child_applies(&h);
    let writes_before = h.kube.request_count("patch", "configmaps");
    // Wake every BankClient: N more reconciles, none of them a LIST.
    for i in 0..N {
        h.api::<BankClient>(NS)
            .patch(
                &format!("bank-{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"test.bookme.io/poke": "1"}}})),
            )
            .await
            .unwrap();
    }
    h.wait_for("the pokes reconciled", WAIT, || async {
        (child_applies(&h) >= applies_before + N as u64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lists(&h),
        after_start,
        "a BankClient reconcile listed BankClients or AppRegistrations from the API server"
    );
    // The registry did not change, so a burst of reconciles writes it at most once.
    let writes = h.kube.request_count("patch", "configmaps") - writes_before;
    assert!(
        writes <= 1,
        "{writes} ConfigMap writes for an unchanged registry"
    );
    // Still complete and correct.
    assert_eq!(registry_entries(&h).await, N);
}

/// An AppRegistration with a credential checks that no older resource of its namespace claims the
/// same Secret; it reads them from the controller's store, not with a LIST per reconcile (O(N²)
/// API-server work for N resources, and the bulk of a BankClient wave's child reconciles).
#[tokio::test]
async fn app_registration_reconciles_list_nothing() {
    const N: usize = 5;
    let mut h = Harness::start().await;
    h.start_controllers();
    let apps = h.api::<AppRegistration>(NS);
    let names: Vec<String> = (0..N).map(|i| format!("listless-{i}")).collect();
    let settled = |generation_changed: bool| {
        let apps = apps.clone();
        let names = names.clone();
        async move {
            for name in &names {
                let app = apps.get_opt(name).await.unwrap()?;
                let renamed = app.spec.display_name.ends_with("renamed");
                if !settled_app(&app) || renamed != generation_changed {
                    return None;
                }
            }
            Some(())
        }
    };
    for name in &names {
        h.apply(cr(
            "AppRegistration",
            name,
            json!({"displayName": name, "credentials": {"passwords": [{"secretName": format!("{name}-creds")}]}}),
        ))
        .await;
    }
    h.wait_for("all Ready", WAIT, || settled(false)).await;
    // Nor the cluster's EntraPolicies: the policy watch's store answers.
    let lists = |h: &Harness| {
        h.kube.request_count("list", "appregistrations")
            + h.kube.request_count("list", "entrapolicies")
    };
    let before = lists(&h);
    for name in &names {
        apps.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": format!("{name} renamed")}})),
        )
        .await
        .unwrap();
    }
    h.wait_for("all renamed and Ready", WAIT, || settled(true))
        .await;
    assert_eq!(
        lists(&h),
        before,
        "an AppRegistration reconcile listed AppRegistrations or EntraPolicies from the API server"
    );
}

/// An AppRegistration that refers to another (a BankClient's child to its API) reads the other's
/// status from the shared store, not with a GET per reconcile: 10,000 BankClients would otherwise
/// GET the one API object about 90,000 times.
#[tokio::test]
async fn references_are_read_from_the_store_not_the_api_server() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(system_api()).await;
    h.apply(cr(
        "AppRegistration",
        "referrer",
        json!({"displayName": "referrer", "requiredResourceAccess": [
            {"appRef": {"name": "api-system-integration"}, "application": ["System"]}
        ]}),
    ))
    .await;
    let apps = h.api::<AppRegistration>(NS);
    // Polled by LIST: the GETs counted below are the operator's alone.
    let settled = |display_name: &'static str| {
        let apps = apps.clone();
        async move {
            let list = apps.list(&Default::default()).await.unwrap().items;
            let done = list.len() == 2
                && list.iter().all(settled_app)
                && list.iter().any(|a| a.spec.display_name == display_name);
            done.then_some(())
        }
    };
    h.wait_for("both Ready", WAIT, || settled("referrer")).await;
    let gets = h.kube.request_count("get", "appregistrations");
    for name in ["referrer-1", "referrer-2", "referrer-3"] {
        apps.patch(
            "referrer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": name}})),
        )
        .await
        .unwrap();
        h.wait_for(name, WAIT, || settled(name)).await;
    }
    assert_eq!(
        h.kube.request_count("get", "appregistrations"),
        gets,
        "a reconcile read the referenced AppRegistration from the API server"
    );
}

/// Clients of one API share its service principal for a while instead of reading it on every
/// reconcile (7.6 reads per BankClient at 10,000), and a copy that lacks a role a client asks for
/// is read again at once.
#[tokio::test]
async fn clients_of_one_api_share_its_service_principal_and_a_new_role_is_seen_at_once() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(system_api()).await;
    let clients = ["client-a", "client-b", "client-c"];
    for name in clients {
        h.apply(cr(
            "AppRegistration",
            name,
            json!({"displayName": name, "grantAdminConsent": true, "requiredResourceAccess": [
                {"appRef": {"name": "api-system-integration"}, "application": ["System"]}
            ]}),
        ))
        .await;
    }
    let apps = h.api::<AppRegistration>(NS);
    let settled = |suffix: &'static str| {
        let apps = apps.clone();
        async move {
            let list = apps.list(&Default::default()).await.unwrap().items;
            let done = list.len() == 4
                && list.iter().all(|a| {
                    settled_app(a)
                        && (a.metadata.name.as_deref() == Some("api-system-integration")
                            || a.spec.display_name.ends_with(suffix))
                });
            done.then_some(())
        }
    };
    h.wait_for("all Ready", WAIT, || settled("")).await;
    let api_app_id = apps
        .get("api-system-integration")
        .await
        .unwrap()
        .status
        .unwrap()
        .app_id
        .unwrap()
        .to_string();
    let api_sp_reads = |h: &Harness| {
        h.entra
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains(&api_app_id))
            .filter(|r| r.template.starts_with("/v1.0/servicePrincipals"))
            .count()
    };
    h.entra.clear_requests();
    for name in clients {
        apps.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": format!("{name} renamed")}})),
        )
        .await
        .unwrap();
    }
    h.wait_for("all renamed", WAIT, || settled("renamed")).await;
    assert_eq!(
        api_sp_reads(&h),
        0,
        "three reconciles within a minute read the API's service principal again"
    );

    // The API gains a role and a client asks for it: the shared copy lacks it, so it is read again
    // at once, well before the copy would expire.
    apps.patch(
        "api-system-integration",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"appRoles": [
            {"value": "System", "allowedMemberTypes": ["Application"]},
            {"value": "Audit", "allowedMemberTypes": ["Application"]}
        ]}})),
    )
    .await
    .unwrap();
    h.wait_for("the API publishes Audit", WAIT, || async {
        let api = apps.get("api-system-integration").await.unwrap();
        api.status?.role_ids.contains_key("Audit").then_some(())
    })
    .await;
    apps.patch(
        "client-a",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"displayName": "client-a audited", "requiredResourceAccess": [
                {"appRef": {"name": "api-system-integration"}, "application": ["System", "Audit"]}
            ]}}),
        ),
    )
    .await
    .unwrap();
    h.wait_for("client-a holds Audit", Duration::from_secs(20), || async {
        let status = apps.get("client-a").await.unwrap().status?;
        let audit = status
            .granted_permissions
            .iter()
            .any(|g| g.value == "Audit");
        (audit && is_ready(Some(&status.conditions))).then_some(())
    })
    .await;
    assert!(
        api_sp_reads(&h) >= 1,
        "the copy without Audit was read again"
    );
}

#[tokio::test]
async fn a_replicating_app_does_not_hold_the_only_worker() {
    let h = Harness::start().await;
    // One worker, so a reconcile parked on replication would stall every other resource.
    let ctx = h.ctx.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(async move {
        support::run_app_controller(ctx, 1, async {
            let _ = rx.await;
        })
        .await;
    });
    let apps = h.api::<AppRegistration>(NS);
    let ready = |name: &'static str| {
        let apps = apps.clone();
        async move {
            apps.get_opt(name)
                .await
                .unwrap()
                .filter(|a| is_ready(a.status.as_ref().map(|s| &s.conditions)))
        }
    };
    h.apply(cr(
        "AppRegistration",
        "settled",
        json!({"displayName": "Settled", "credentials": {"passwords": [{"secretName": "settled-creds"}]}}),
    ))
    .await;
    h.wait_for("settled Ready", WAIT, || ready("settled")).await;

    // New objects now take 8 s to replicate.
    h.entra.set_replication_delay(Duration::from_secs(8));
    h.apply(cr(
        "AppRegistration",
        "fresh",
        json!({"displayName": "Fresh", "credentials": {"passwords": [{"secretName": "fresh-creds"}]}}),
    ))
    .await;
    // Let `fresh` start and meet the replication delay, then change `settled`.
    h.wait_for("fresh's application created in Entra", WAIT, || async {
        let dump = h.entra.state_dump();
        dump["tenants"]
            .as_array()?
            .iter()
            .flat_map(|t| t["applications"].as_array().cloned().unwrap_or_default())
            .any(|a| a["displayName"] == "Fresh")
            .then_some(())
    })
    .await;
    apps.patch(
        "settled",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"displayName": "Settled, renamed"}})),
    )
    .await
    .unwrap();
    let renamed = h
        .wait_for("settled renamed and Ready", WAIT, || async {
            apps.get_opt("settled").await.unwrap().filter(|a| {
                let s = a.status.as_ref();
                s.and_then(|s| s.observed_generation) == a.metadata.generation
                    && is_ready(s.map(|s| &s.conditions))
            })
        })
        .await;
    assert!(renamed.status.is_some());
    assert!(
        ready("fresh").await.is_none(),
        "the single worker served `settled` while `fresh` was still replicating"
    );
    // And `fresh` converges once Entra has caught up.
    h.wait_for("fresh Ready", WAIT, || ready("fresh")).await;
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}

#[tokio::test]
async fn registry_requests_compute_nothing_the_writer_computes_once_per_window() {
    use entra_operator::controllers::coalesce::CoalescedConfigMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = Harness::start().await;
    let computed = Arc::new(AtomicUsize::new(0));
    let counter = computed.clone();
    let registry =
        CoalescedConfigMap::new("coalesce-test", Duration::from_millis(300), move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::collections::BTreeMap::from([("client".to_string(), "bank".to_string())])
        });
    // A burst of a thousand reconciles asking for the namespace's registry: none of them computes
    // it (each would cost the whole namespace's registry).
    for _ in 0..1000 {
        registry.request(&h.ctx, NS);
    }
    assert_eq!(computed.load(Ordering::SeqCst), 0);
    // The writer computes it once for the whole burst, and writes it once.
    tokio::time::timeout(WAIT, async {
        while registry.writes() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the registry is written");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(registry.writes(), 1);
}

/// One AppRegistration watch feeds every controller: the AppRegistration controller's kube
/// `Controller` waits for the store through `Store::wait_until_ready` (which wakes a single
/// waiter), and BankClient reconciles and the Secret-claim check wait for the same store. Every
/// one of them must wake (a BankClient controller once never reconciled).
#[tokio::test]
async fn every_waiter_on_the_shared_app_store_wakes() {
    use entra_operator::controllers::wiring::SharedWatch;
    let h = Harness::start().await;
    let apps = SharedWatch::<AppRegistration>::new();
    let feeds: Vec<_> = (0..4).map(|_| apps.feed()).collect();
    let controller_wait = {
        let store = feeds[0].store.clone();
        tokio::spawn(async move { store.wait_until_ready().await.is_ok() })
    };
    let ours: Vec<_> = feeds
        .iter()
        .map(|f| {
            let ready = f.ready.clone();
            tokio::spawn(async move { ready.wait().await })
        })
        .collect();
    tokio::task::yield_now().await;
    let watch = tokio::spawn(apps.run(h.api::<AppRegistration>(NS), Default::default()));
    assert!(
        tokio::time::timeout(WAIT, controller_wait)
            .await
            .unwrap()
            .unwrap()
    );
    for waiter in ours {
        assert!(
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("a waiter on the shared store was never woken")
                .unwrap()
        );
    }
    watch.abort();
}

/// Events: a repeat (same object, reason and note) is the first event's series, a new note is a
/// new event, and what is remembered for series is bounded however many resources publish (the
/// kube-rs `Recorder` kept every event of the last 6 minutes, whole: tens of MiB in a burst of
/// 10,000 resources).
#[tokio::test]
async fn repeated_events_become_a_series_and_their_memory_is_bounded() {
    use entra_operator::controllers::event_publisher::EventPublisher;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::events::v1::Event;
    use kube::Resource;
    use kube::runtime::events::{EventType, Reporter};
    let h = Harness::start().await;
    let reporter = Reporter {
        controller: "entra-operator".into(),
        instance: Some("test".into()),
    };
    let events = EventPublisher::with_capacity(h.client.clone(), reporter, 4);
    let configmaps = h.api::<ConfigMap>(NS);
    let mut objects = Vec::new();
    for i in 0..10 {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("events-{i}"), "namespace": NS}
        }))
        .unwrap();
        objects.push(
            configmaps
                .create(&Default::default(), &cm)
                .await
                .unwrap()
                .object_ref(&()),
        );
    }
    let first = &objects[0];
    for _ in 0..3 {
        events
            .publish(first, EventType::Normal, "Synced", "Applied to Entra: app")
            .await
            .unwrap();
    }
    events
        .publish(first, EventType::Normal, "Synced", "Applied to Entra: sp")
        .await
        .unwrap();
    let about = |name: &str| {
        let name = name.to_string();
        move |e: &Event| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name)
    };
    let list = h.api::<Event>(NS).list(&Default::default()).await.unwrap();
    let mut first_events: Vec<_> = list.items.iter().filter(|e| about("events-0")(e)).collect();
    first_events.sort_by_key(|e| e.note.clone());
    assert_eq!(first_events.len(), 2, "{first_events:#?}");
    assert_eq!(
        first_events[0].note.as_deref(),
        Some("Applied to Entra: app")
    );
    assert_eq!(first_events[0].series.as_ref().map(|s| s.count), Some(3));
    assert!(first_events[1].series.is_none());

    for object in &objects[1..] {
        events
            .publish(object, EventType::Warning, "GraphThrottled", "429")
            .await
            .unwrap();
    }
    assert_eq!(events.remembered(), 4);
    let list = h.api::<Event>(NS).list(&Default::default()).await.unwrap();
    for i in 1..10 {
        assert_eq!(
            list.items
                .iter()
                .filter(|e| about(&format!("events-{i}"))(e))
                .count(),
            1,
            "every event is published, remembered or not"
        );
    }
    // Forgotten: a repeat of the oldest is a new event, not a series.
    events
        .publish(&objects[1], EventType::Warning, "GraphThrottled", "429")
        .await
        .unwrap();
    let list = h.api::<Event>(NS).list(&Default::default()).await.unwrap();
    assert_eq!(
        list.items.iter().filter(|e| about("events-1")(e)).count(),
        2
    );
}

/// Resyncs every 2 s (kept in the operator's own queue from 2 s on) and a change feed that follows
/// Graph's delta links every 300 ms assuming 1 s of lag, as quiet resyncs need. The feed runs until
/// the test's runtime ends.
fn follow_changes_quickly(h: &mut Harness, resync: Duration) -> tokio::task::JoinHandle<()> {
    use entra_operator::controllers::later::Later;
    use entra_operator::graph::ChangeFeed;
    use std::sync::Arc;
    let ctx = Arc::get_mut(&mut h.ctx).expect("no controller holds the context");
    ctx.settings.resync = resync;
    ctx.later = Arc::new(Later::new(Duration::from_secs(2)));
    ctx.changes = Arc::new(ChangeFeed::with_lag(
        Duration::from_millis(300),
        Duration::from_secs(1),
    ));
    tokio::spawn(h.ctx.follow_changes(std::future::pending()))
}

/// Quiet resyncs of AppRegistrations so far.
fn quiet_resyncs(h: &Harness) -> u64 {
    h.metrics
        .quiet_resyncs
        .get_or_create(&entra_operator::metrics::KindLabels {
            kind: "AppRegistration",
        })
        .get()
}

/// Quiet resyncs (`appregistration/quiet.rs`): with the change feed following Graph's delta
/// queries, a resync of an unchanged client reads only its app role assignments (which delta does
/// not track), and an API with nothing untracked reads nothing; a change made in Entra behind the
/// operator's back (the client's application, the API's service principal) is reported by delta
/// and repaired at the next resync, well before a full resync would come anyway.
#[tokio::test]
async fn an_unchanged_resync_reads_only_what_delta_does_not_track_and_drift_is_still_repaired() {
    let mut h = Harness::start().await;
    // So that the test, as the operator, may change a service principal it does not own yet.
    h.grant_least_privilege_and(&["Directory.Read.All"]);
    let _feed = follow_changes_quickly(&mut h, Duration::from_secs(2));
    h.start_controllers();
    h.apply(system_api()).await;
    h.apply(cr(
        "AppRegistration",
        "client-a",
        json!({"displayName": "client-a", "grantAdminConsent": true,
               "requiredResourceAccess": [
                   {"appRef": {"name": "api-system-integration"}, "application": ["System"]}],
               "credentials": {"passwords": [{"secretName": "client-a-credentials"}]}}),
    ))
    .await;
    let apps = h.api::<AppRegistration>(NS);
    h.wait_for("both Ready", WAIT, || async {
        let list = apps.list(&Default::default()).await.unwrap().items;
        (list.len() == 2 && list.iter().all(settled_app)).then_some(())
    })
    .await;
    h.wait_for("the first quiet resyncs", WAIT, || async {
        (quiet_resyncs(&h) >= 2).then_some(())
    })
    .await;

    // A window of quiet resyncs: no write, no read of an application or service principal, and
    // one read of the client's assignments per resync.
    h.entra.clear_requests();
    let before = quiet_resyncs(&h);
    h.wait_for("six more quiet resyncs", WAIT, || async {
        (quiet_resyncs(&h) >= before + 6).then_some(())
    })
    .await;
    let requests = h.entra.requests();
    let in_window = quiet_resyncs(&h) - before;
    let resource_reads: Vec<String> = requests
        .iter()
        .filter(|r| r.template.starts_with("/v1.0") && !r.template.ends_with("/delta"))
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    assert!(
        resource_reads.iter().all(|r| r.starts_with("GET ")),
        "no writes: {resource_reads:?}"
    );
    let assignments = resource_reads
        .iter()
        .filter(|r| r.ends_with("/appRoleAssignments"))
        .count();
    assert_eq!(
        assignments,
        resource_reads.len(),
        "only assignments are read: {resource_reads:?}"
    );
    assert!(
        (assignments as u64) <= in_window,
        "at most one read per quiet resync: {assignments} reads, {in_window} resyncs"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.template == "/v1.0/applications/delta")
            && requests
                .iter()
                .any(|r| r.template == "/v1.0/servicePrincipals/delta"),
        "the feed follows both delta links"
    );

    // Drift behind the operator's back: delta reports both objects and the next resyncs repair them.
    let client = apps.get("client-a").await.unwrap().status.unwrap();
    let api = apps
        .get("api-system-integration")
        .await
        .unwrap()
        .status
        .unwrap();
    let client_object = client.object_id.unwrap();
    let api_sp = api.service_principal_id.unwrap();
    h.ctx
        .graph
        .update_application(&client_object, &json!({"displayName": "tampered"}))
        .await
        .unwrap();
    h.ctx
        .graph
        .update_service_principal(&api_sp, &json!({"appRoleAssignmentRequired": false}))
        .await
        .unwrap();
    h.wait_for("both repaired", Duration::from_secs(30), || async {
        let app = h.ctx.graph.get_application(&client_object).await.ok()?;
        let sp = h
            .ctx
            .graph
            .get_service_principal_by_app_id(api.app_id.as_deref()?)
            .await
            .ok()?;
        (app.display_name.as_deref() == Some("client-a")
            && sp.app_role_assignment_required == Some(true))
        .then_some(())
    })
    .await;
}

/// Drift is repaired when delta reports it, not at the next resync: a settled resource whose
/// application is changed behind the operator's back is woken by the change feed's next rounds.
/// The operator's own writes (creating the application) wake nothing.
#[tokio::test]
async fn drift_reported_by_delta_is_repaired_before_the_next_resync() {
    const RESYNC: Duration = Duration::from_secs(20);
    let mut h = Harness::start().await;
    let _feed = follow_changes_quickly(&mut h, RESYNC);
    h.start_controllers();
    h.apply(cr(
        "AppRegistration",
        "orders",
        json!({"displayName": "orders",
               "credentials": {"passwords": [{"secretName": "orders-credentials"}]}}),
    ))
    .await;
    let apps = h.api::<AppRegistration>(NS);
    h.wait_for("Ready", WAIT, || async {
        let app = apps.get("orders").await.ok()?;
        settled_app(&app).then_some(())
    })
    .await;
    // The first resync reads in full, writes nothing and leaves a memo.
    h.wait_for("a memo", RESYNC + WAIT, || async {
        (h.ctx.later.memos() == 1).then_some(())
    })
    .await;
    assert_eq!(
        h.metrics.drift_wakeups.get(),
        0,
        "the operator's own writes wake nothing"
    );
    // A change within the feed's lag (1 s here) after that read is indistinguishable from the
    // operator's own last write and waits for the resync; one later than that is drift.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let object_id = apps
        .get("orders")
        .await
        .unwrap()
        .status
        .unwrap()
        .object_id
        .unwrap();
    h.ctx
        .graph
        .update_application(&object_id, &json!({"displayName": "tampered"}))
        .await
        .unwrap();
    // The next resync is about 20 s away; the feed follows delta every 0.3 s with a 1 s lag.
    h.wait_for("repaired", Duration::from_secs(8), || async {
        let app = h.ctx.graph.get_application(&object_id).await.ok()?;
        (app.display_name.as_deref() == Some("orders")).then_some(())
    })
    .await;
    assert_eq!(h.metrics.drift_wakeups.get(), 1);

    // A rotation (the operator's own write, here made at once after a full read) wakes nothing.
    h.wait_for("a memo again", RESYNC + WAIT, || async {
        (h.ctx.later.memos() == 1).then_some(())
    })
    .await;
    apps.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": "r1"}}})),
    )
    .await
    .unwrap();
    h.wait_for("rotated", WAIT, || async {
        let app = apps.get("orders").await.ok()?;
        let credentials = app.status?.credentials;
        (credentials.first()?.rotate_token.as_deref() == Some("r1")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.metrics.drift_wakeups.get(),
        1,
        "the rotation woke nothing"
    );
}

/// A BankClient's child AppRegistration resyncs quietly too: the BankClient's own resync (which
/// applies the child and writes the Secret's registry entry) changes nothing the child plans from.
#[tokio::test]
async fn a_bank_clients_child_resyncs_quietly() {
    const N: usize = 3;
    let mut h = Harness::start().await;
    let _feed = follow_changes_quickly(&mut h, Duration::from_secs(2));
    h.start_all_controllers();
    h.apply(system_api()).await;
    for i in 0..N {
        h.apply(cr(
            "BankClient",
            &format!("bank-{i}"),
            json!({"bankId": format!("bank-{i}"), "api": {"appRef": {"name": "api-system-integration"}, "role": "System"},
                   "secret": {"name": format!("bank-{i}-credentials")}}),
        ))
        .await;
    }
    h.wait_for("all BankClients Ready", WAIT, || async {
        (ready_bank_clients(&h).await == N).then_some(())
    })
    .await;
    let before = quiet_resyncs(&h);
    h.wait_for(
        "every child and the API resync quietly twice",
        WAIT,
        || async { (quiet_resyncs(&h) >= before + 2 * (N as u64 + 1)).then_some(()) },
    )
    .await;
}
