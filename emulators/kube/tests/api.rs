//! The API server semantics, through kube-rs (a real client) and raw requests.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchEvent,
    WatchParams,
};

use serde_json::{Value, json};

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => {
            let s: kube::core::Status = *s;
            (s.code, s.message)
        }
        other => panic!("not an API error: {other:?}"),
    }
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_get_update_with_optimistic_concurrency() {
    let (_emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    let e = code(
        api.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.0, 409);
    assert!(e.1.contains("already exists"), "{}", e.1);

    let mut fresh = api.get("a").await.unwrap();
    fresh.data = Some(BTreeMap::from([("k".to_string(), "w".to_string())]));
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    // The first version is now stale.
    let e = code(
        api.replace("a", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.0, 409);
    assert!(e.1.contains("the object has been modified"), "{}", e.1);
    // A no-op update does not bump the resource version.
    let same = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    let e = code(api.get("missing").await.unwrap_err());
    assert_eq!(e.0, 404);
    // Namespaces must exist.
    let other: Api<ConfigMap> = Api::namespaced(client, "nope");
    assert_eq!(
        code(
            other
                .create(&PostParams::default(), &cm("x", &[]))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}

#[tokio::test]
async fn generation_and_status_subresource() {
    let (_emu, client) = start().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let w = api
        .create(&PostParams::default(), &widget("w", 2))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(
        w.spec.color.as_deref(),
        Some("red"),
        "schema default applied"
    );

    // Status through the main endpoint is ignored.
    let mut with_status = w.clone();
    with_status.status = Some(WidgetStatus {
        observed: Some(9),
        conditions: vec![],
    });
    with_status.metadata.labels = Some(BTreeMap::from([("l".into(), "1".into())]));
    let r = api
        .replace("w", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(r.status, None);
    assert_eq!(
        r.metadata.generation,
        Some(1),
        "metadata change keeps generation"
    );

    // The status subresource changes only status.
    let patch = json!({"apiVersion": "test.example.com/v1", "kind": "Widget",
        "spec": {"size": 50}, "status": {"observed": 1, "conditions": [{"type": "Ready", "status": "True"}]}});
    let s = api
        .patch_status(
            "w",
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().observed, Some(1));
    assert_eq!(s.spec.size, 2);
    assert_eq!(s.metadata.generation, Some(1));

    // Spec changes bump the generation.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    assert_eq!(p.status.unwrap().observed, Some(1), "status kept");
}

#[tokio::test]
async fn invalid_custom_resources_get_422_naming_the_field() {
    let (_emu, client) = start().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let mut bad = widget("bad", 3);
    let (c, msg) = code(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(c, 422);
    assert_eq!(
        msg,
        "Widget.test.example.com \"bad\" is invalid: spec.size: Invalid value: \"object\": odd sizes must be blue"
    );
    bad.spec.size = 200;
    let (c, msg) = code(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(c, 422);
    assert!(
        msg.contains(
            "spec.size: Invalid value: 200: spec.size in body should be less than or equal to 100"
        ),
        "{msg}"
    );
    bad.spec.size = 2;
    bad.spec.color = Some("green".into());
    let msg = code(api.create(&PostParams::default(), &bad).await.unwrap_err()).1;
    assert!(
        msg.contains(
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\""
        ),
        "{msg}"
    );

    // The Status body lists the causes.
    let (status, body) = raw(&client, "POST", "/apis/test.example.com/v1/namespaces/default/widgets", &[],
        Some(json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "x"}, "spec": {"size": 2, "note": "UPPER"}}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.note");
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueInvalid");

    // Transition rule: runs on update only.
    api.create(&PostParams::default(), &widget("t", 10))
        .await
        .unwrap();
    let msg = code(
        api.patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap_err(),
    )
    .1;
    assert!(msg.contains("size may not shrink"), "{msg}");

    // Unknown fields are pruned; fieldValidation=Strict rejects them.
    let (status, body) = raw(&client, "POST", "/apis/test.example.com/v1/namespaces/default/widgets", &[],
        Some(json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "p"}, "spec": {"size": 2, "extra": 1}}))).await;
    assert_eq!(status, 201);
    assert!(body["spec"].get("extra").is_none());
    let (status, body) = raw(&client, "POST", "/apis/test.example.com/v1/namespaces/default/widgets?fieldValidation=Strict", &[],
        Some(json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "q"}, "spec": {"size": 2, "extra": 1}}))).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.extra\""),
        "{body}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_emu, client) = start().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let mut w = widget("f", 2);
    w.metadata.finalizers = Some(vec!["test/hold".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = api.get("f").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    // JSON patch with a test op, as kube-rs's finalizer helper sends it.
    let bad = json_patch::Patch(
        serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "other"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]))
        .unwrap(),
    );
    let e = code(
        api.patch("f", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.0, 422);
    let good = json_patch::Patch(
        serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "test/hold"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]))
        .unwrap(),
    );
    api.patch("f", &PatchParams::default(), &Patch::<()>::Json(good))
        .await
        .unwrap();
    assert_eq!(code(api.get("f").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let (_emu, client) = start().await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (owner, policy) in [
        ("bg", PropagationPolicy::Background),
        ("fg", PropagationPolicy::Foreground),
    ] {
        let w = widgets
            .create(&PostParams::default(), &widget(owner, 2))
            .await
            .unwrap();
        let mut child = cm(&format!("{owner}-child"), &[]);
        child.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "test.example.com/v1".into(),
                kind: "Widget".into(),
                name: owner.into(),
                uid: w.metadata.uid.clone().unwrap(),
                block_owner_deletion: Some(true),
                controller: Some(true),
            },
        ]);
        cms.create(&PostParams::default(), &child).await.unwrap();
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        widgets.delete(owner, &dp).await.unwrap();
        let name = format!("{owner}-child");
        eventually("dependent deleted", || {
            let cms = cms.clone();
            let name = name.clone();
            async move { cms.get_opt(&name).await.unwrap().is_none() }
        })
        .await;
        eventually("owner deleted", || {
            let w = widgets.clone();
            async move { w.get_opt(owner).await.unwrap().is_none() }
        })
        .await;
    }
    // Deleting a namespace deletes its content.
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("gone".into());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let in_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    in_ns
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("gone").await.unwrap().is_none() }
    })
    .await;
    assert!(in_ns.get_opt("c").await.unwrap().is_none());
}

#[tokio::test]
async fn selectors_and_pagination() {
    let (_emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        let mut c = cm(&format!("c{i}"), &[]);
        c.metadata.labels = Some(BTreeMap::from([(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        )]));
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    let not_odd = api
        .list(&ListParams::default().labels("parity notin (odd)"))
        .await
        .unwrap();
    assert_eq!(not_odd.items.len(), 4);
    let one = api
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let all: Api<ConfigMap> = Api::all(client);
    let ns = all
        .list(&ListParams::default().fields("metadata.namespace=default"))
        .await
        .unwrap();
    assert_eq!(ns.items.len(), 7);
    // Pages of 3.
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
}

#[tokio::test]
async fn merge_json_strategic_and_apply_patches() {
    let (_emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("p", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let p = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        p.data.unwrap(),
        BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())])
    );
    let p = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"d": "4"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap().len(), 3);
    let jp = json_patch::Patch(serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "9"}])).unwrap());
    let p = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(p.data.unwrap()["a"], "9");

    // Server-side apply: create, ownership, removal of omitted fields, conflicts, force.
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let applied = json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"size": 2, "note": "hello"}});
    let w = widgets
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(w.spec.note.as_deref(), Some("hello"));
    let mf = w.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let without_note = json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 2}});
    let w = widgets
        .patch(
            "s",
            &PatchParams::apply("alice"),
            &Patch::Apply(&without_note),
        )
        .await
        .unwrap();
    assert_eq!(w.spec.note, None, "omitted field removed");
    let bob = json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 4}});
    let (c, msg) = code(
        widgets
            .patch("s", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!(c, 409);
    assert!(
        msg.contains("conflict with \"alice\"") && msg.contains(".spec.size"),
        "{msg}"
    );
    let w = widgets
        .patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await
        .unwrap();
    assert_eq!(w.spec.size, 4);
    // Alice no longer owns size: her next apply without size leaves it alone.
    let alice2 = json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"color": "blue"}});
    let w = widgets
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert_eq!(w.spec.size, 4);
    assert_eq!(w.spec.color.as_deref(), Some("blue"));
}

#[tokio::test]
async fn watch_delivers_every_event_in_order_under_concurrent_writes() {
    let (_emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(60), &start_rv)
        .await
        .unwrap()
        .boxed();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let name = format!("w{w}-{i}");
                    api.create(&PostParams::default(), &cm(&name, &[]))
                        .await
                        .unwrap();
                    api.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"x": "1"}})),
                    )
                    .await
                    .unwrap();
                    api.delete(&name, &DeleteParams::default()).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut last = 0u64;
    let mut counts = BTreeMap::new();
    while counts.values().sum::<usize>() < 300 {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("{e:?}"),
        };
        let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last, "resource versions increase");
        last = rv;
        *counts.entry(kind).or_insert(0usize) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("ADDED", 100), ("DELETED", 100), ("MODIFIED", 100)])
    );
}

#[tokio::test]
async fn watch_bookmarks_initial_events_and_410() {
    let (emu, client) = start_with(kube_emulator::KubeEmulatorConfig {
        history: 10,
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    // sendInitialEvents: the current objects, then a bookmark marking their end.
    let (status, body) = raw(&client, "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
        &[], None).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .as_str()
        .map(|s| {
            s.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_else(|| vec![body.clone()]);
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "one");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Periodic bookmarks at the current version.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(3), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // Too old: history holds 10 events.
    for i in 0..20 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    let mut s = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    // Dropped watches end the stream.
    let rv = emu.resource_version().to_string();
    let mut s = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    emu.drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test]
async fn fault_switches() {
    let (emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    emu.fail_next_writes("configmaps", 2, 500);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("f", &[]))
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("f", &[]))
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    api.create(&PostParams::default(), &cm("f", &[]))
        .await
        .unwrap();
    emu.fail_next_writes("configmaps", 1, 409);
    let e = code(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.0, 409);
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    emu.set_latency(300);
    let t = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    emu.set_latency(0);
}

#[tokio::test]
async fn tables_discovery_and_tls_with_token() {
    let (emu, client) = start_with(kube_emulator::KubeEmulatorConfig {
        tls: true,
        token: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    assert!(emu.base_url().starts_with("https://"));
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("tw", 8))
        .await
        .unwrap();
    let (status, t) = raw(
        &client,
        "GET",
        "/apis/test.example.com/v1/namespaces/default/widgets",
        &[(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Size", "Ready"]);
    assert_eq!(t["rows"][0]["cells"], json!(["tw", 8, null]));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "test.example.com"));
    let res = client
        .list_api_group_resources("test.example.com/v1")
        .await
        .unwrap();
    let names: Vec<&str> = res.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["widgets", "widgets/status"]);

    // Without the token: 401.
    let url = format!("{}/api/v1/namespaces", emu.base_url());
    let mut cfg = kube::Config::new(url.parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(emu.ca_pem().unwrap())]);
    let anon = kube::Client::try_from(cfg).unwrap();
    let (status, _) = raw(&anon, "GET", "/api/v1/namespaces", &[], None).await;
    assert_eq!(status, 401);
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn crd_with_list(name: &str, items: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{name}s.cost.example.com")},
        "spec": {
            "group": "cost.example.com",
            "scope": "Namespaced",
            "names": {"plural": format!("{name}s"), "singular": name, "kind": "Thing", "listKind": "ThingList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {"uris": items}}}
            }}}]
        }
    })
}

/// kube-apiserver estimates each rule's worst case when the CRD is created. Without `maxLength`
/// a string may be as long as a 3 MiB request (and without `maxItems` a list as long as fits in
/// one), so a pairwise uniqueness rule is refused — the rule, its share of the total, and the total — with the API server's wording.
#[tokio::test]
async fn a_crd_whose_rules_exceed_the_cost_budget_is_refused() {
    let (_emu, client) = start().await;
    let rule =
        json!([{"rule": "self.all(u, self.exists_one(v, v == u))", "message": "must not repeat"}]);
    let over = crd_with_list(
        "over",
        json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": rule}),
    );
    let (status, body) = raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &[],
        Some(over),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let path = "spec.validation.openAPIV3Schema.properties[spec].properties[uris].x-kubernetes-validations[0].rule";
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "CustomResourceDefinition.apiextensions.k8s.io \"overs.cost.example.com\" is invalid: ["
        ),
        "{message}"
    );
    assert!(message.contains(&format!("{path}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")), "{message}");
    assert!(message.contains(&format!("{path}: Forbidden: contributed to estimated rule & messageExpression cost total exceeding cost limit for entire OpenAPIv3 schema")), "{message}");
    assert!(message.contains("spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule & messageExpression cost total for entire OpenAPIv3 schema exceeds budget by factor of more than 100x"), "{message}");
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "FieldValueForbidden"
    );
    let (status, _) = raw(&client, "GET", "/apis/cost.example.com/v1/overs", &[], None).await;
    assert_eq!(status, 404, "a refused CRD serves nothing");

    let within = crd_with_list(
        "within",
        json!({"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 255}, "x-kubernetes-validations": rule}),
    );
    let (status, body) = raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &[],
        Some(within),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn events_written_through_either_api_are_read_through_both() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as EventV1;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    // kube-rs' Recorder writes events.k8s.io/v1, twice: the repeat becomes a series patch.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-controller".into(),
            instance: Some("pod-1".into()),
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "Tested".into(),
        note: Some("seen through both APIs".into()),
        action: "Testing".into(),
        secondary: None,
    };
    let reference = owner.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    // kubectl describe reads core v1 events with involvedObject field selectors.
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let selector = format!(
        "involvedObject.name=owner,involvedObject.namespace=default,involvedObject.uid={}",
        owner.metadata.uid.as_deref().unwrap()
    );
    let found = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].message.as_deref(), Some("seen through both APIs"));
    assert_eq!(
        found[0].reporting_component.as_deref(),
        Some("test-controller")
    );
    assert_eq!(found[0].series.as_ref().and_then(|s| s.count), Some(2));

    // And a core event is an events.k8s.io event; deleting it through one API removes both.
    let mut written = found[0].clone();
    written.metadata = kube::api::ObjectMeta {
        name: Some("by-core".into()),
        ..Default::default()
    };
    core.create(&PostParams::default(), &written).await.unwrap();
    let v1: Api<EventV1> = Api::namespaced(client.clone(), "default");
    let got = v1.get("by-core").await.unwrap();
    assert_eq!(got.note.as_deref(), Some("seen through both APIs"));
    assert_eq!(
        got.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("owner")
    );
    v1.delete("by-core", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(core.get("by-core").await.unwrap_err()).0, 404);
}

/// Server-side apply of an empty map, then of the same map with a key: the key is set. A real API
/// server records the applied empty map as a field (`f:data: {}`) and merges the next apply into
/// it (structured-merge-diff: an empty map is a value the manager owns, not an absence).
#[tokio::test]
async fn applying_an_empty_map_then_a_key_sets_the_key() {
    let (_emu, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reg"}, "data": data});
    let params = PatchParams::apply("registry").force();
    maps.patch("reg", &params, &Patch::Apply(&apply(json!({}))))
        .await
        .unwrap();
    let after = maps
        .patch("reg", &params, &Patch::Apply(&apply(json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(
        after.data.unwrap_or_default().get("a").map(String::as_str),
        Some("1")
    );
    let after = maps
        .patch(
            "reg",
            &params,
            &Patch::Apply(&apply(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(after.data.unwrap_or_default().len(), 2);
}

/// One manager applying the object and its status in turn, both unchanged: the apiserver writes
/// nothing (same resourceVersion, no watch event). It keeps a manager's time on a no-op apply and
/// orders `managedFields` by operation, time, manager, apiVersion and subresource, so the order
/// of the entries does not depend on which was applied last.
#[tokio::test]
async fn repeated_unchanged_applies_of_object_and_status_write_nothing() {
    let (_emu, client) = start().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let main = json!({"apiVersion": "test.example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"team": "a"}}, "spec": {"size": 4}});
    let status = json!({"apiVersion": "test.example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "status": {"observed": 1}});
    let params = PatchParams::apply("ctl").force();
    api.patch("w", &params, &Patch::Apply(&main)).await.unwrap();
    let first = api
        .patch_status("w", &params, &Patch::Apply(&status))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone();
    let order = |w: &Widget| -> Vec<Option<String>> {
        w.metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|e| e.subresource.clone())
            .collect()
    };
    assert_eq!(
        order(&first).len(),
        2,
        "one entry for the object, one for status"
    );
    // Let the clock pass a second, so a time moved on a no-op would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let m = api.patch("w", &params, &Patch::Apply(&main)).await.unwrap();
        assert_eq!(m.metadata.resource_version, rv, "no-op apply of the object");
        let s = api
            .patch_status("w", &params, &Patch::Apply(&status))
            .await
            .unwrap();
        assert_eq!(s.metadata.resource_version, rv, "no-op apply of status");
        assert_eq!(order(&s), order(&first));
    }
    // A real change still writes, and moves only that entry's time.
    let changed = json!({"apiVersion": "test.example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "status": {"observed": 2}});
    let s = api
        .patch_status("w", &params, &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_ne!(s.metadata.resource_version, rv);
    let times: Vec<_> = s
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|e| (e.subresource.clone(), e.time.clone()))
        .collect();
    assert_eq!(
        times[1].0.as_deref(),
        Some("status"),
        "latest change sorts last: {times:?}"
    );
    assert!(times[0].1 < times[1].1, "{times:?}");
}

/// Metadata-only reads (`as=PartialObjectMetadata[List]`), as kube-rs's metadata watcher and
/// client-go's metadata informers send them: metadata, never the object's data.
#[tokio::test]
async fn metadata_only_lists_gets_and_watches_carry_no_data() {
    let (_emu, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("meta", &[("key", "value-xyz")]))
        .await
        .unwrap();
    // Through the real client: list and get as PartialObjectMeta.
    let listed = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("meta"));
    let got = api.get_metadata("meta").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("meta"));
    // The bodies themselves: PartialObjectMetadata, no data.
    let list_accept = [(
        "accept",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )];
    let (status, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &list_accept,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert_eq!(body["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(body["items"][0]["apiVersion"], "meta.k8s.io/v1");
    assert!(!body.to_string().contains("value-xyz"), "{body}");
    let one_accept = [(
        "accept",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )];
    let (status, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        &one_accept,
        None,
    )
    .await;
    assert_eq!(status, 200);
    // One event parses as one JSON value; several stay a string of lines.
    let text = match &body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert!(!text.contains("value-xyz"), "{text}");
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(first["object"]["metadata"]["name"], "meta");
    // Through the real client's metadata watch.
    let mut events = api
        .watch_metadata(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("meta")),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

/// A ConfigMap or Secret holds at most 1 MiB of data (keys and decoded values), as the API
/// server's validation enforces; a registry that outgrows it is refused, not stored.
#[tokio::test]
async fn config_maps_and_secrets_over_one_mebibyte_are_invalid() {
    let (_emu, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let half = "x".repeat(512 * 1024);
    // Exactly at the limit with the keys: fits.
    let at_limit = "y".repeat(1024 * 1024 - 512 * 1024 - 2);
    maps.create(
        &PostParams::default(),
        &cm("fits", &[("a", &half), ("b", &at_limit)]),
    )
    .await
    .unwrap();
    let (status, message) = code(
        maps.create(
            &PostParams::default(),
            &cm("too-big", &[("a", &half), ("b", &half)]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert_eq!(
        message,
        "ConfigMap \"too-big\" is invalid: []: Too long: must have at most 1048576 bytes"
    );
    // Growing one that exists past the limit is refused too, and the stored one is unchanged.
    let (status, _) = code(
        maps.patch(
            "fits",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"c": "zz"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(
        !maps
            .get("fits")
            .await
            .unwrap()
            .data
            .unwrap()
            .contains_key("c")
    );
    // A Secret counts decoded values.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "default");
    let secret = |name: &str, size: usize| {
        serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(json!({
            "metadata": {"name": name},
            "stringData": {"k": "s".repeat(size)},
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret("fits", 1024 * 1024 - 1))
        .await
        .unwrap();
    let (status, message) = code(
        secrets
            .create(&PostParams::default(), &secret("too-big", 1024 * 1024))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert_eq!(
        message,
        "Secret \"too-big\" is invalid: data: Too long: must have at most 1048576 bytes"
    );
}
