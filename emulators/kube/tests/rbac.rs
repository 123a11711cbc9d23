//! `--authorization rbac`: ServiceAccount tokens, Roles and bindings decide, as kube-apiserver's
//! RBAC authorizer does; the admin kubeconfig may do anything.

mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::{Authorization, KubeEmulatorConfig};
use serde_json::{Value, json};

async fn client_from(yaml: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn service_accounts_get_exactly_what_their_roles_grant() {
    let (emu, admin) = start_with(KubeEmulatorConfig {
        authorization: Authorization::Rbac,
        ..Default::default()
    })
    .await;
    // The admin kubeconfig is all-powerful.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": "cm-writer", "namespace": "default"},
    "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"], "resourceNames": ["deletable"]}
    ]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cm-writer", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "default"}]});
    for obj in [role, binding] {
        emu.create(obj).unwrap();
    }
    let admin_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    admin_cms
        .create(&PostParams::default(), &cm("existing", &[("a", "1")]))
        .await
        .unwrap();

    // TokenRequest, as `kubectl create token bot` sends it.
    emu.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bot", "namespace": "default"}}))
        .unwrap();
    let (status, tr) = raw(
        &admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/bot/token",
        &[],
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": []}})),
    )
    .await;
    assert_eq!(status, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert!(
        tr["status"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let bot = client_from(
        &emu.service_account_kubeconfig_yaml("default", "bot")
            .unwrap(),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(bot.clone(), "default");
    cms.get("existing").await.unwrap();
    // Server-side apply of an existing object needs patch ...
    cms.patch(
        "existing",
        &PatchParams::apply("bot").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "2"}})),
    )
    .await
    .unwrap();
    // ... and of a missing one patch and create.
    let (status, message) = code(
        cms.patch(
            "new",
            &PatchParams::apply("bot").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 403);
    assert_eq!(
        message,
        "configmaps \"new\" is forbidden: User \"system:serviceaccount:default:bot\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    // Plain create is denied; deleting is allowed only for the named object.
    let (status, _) = code(
        cms.create(&PostParams::default(), &cm("other", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    let (status, _) = code(
        cms.delete("existing", &Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    admin_cms
        .create(&PostParams::default(), &cm("deletable", &[]))
        .await
        .unwrap();
    cms.delete("deletable", &Default::default()).await.unwrap();
    // Another namespace: nothing.
    let other: Api<ConfigMap> = Api::namespaced(bot.clone(), "kube-system");
    let (status, message) = code(other.list(&Default::default()).await.unwrap_err());
    assert_eq!(status, 403);
    assert!(message.starts_with("configmaps is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"kube-system\""), "{message}");

    // A ClusterRole bound cluster-wide reaches every namespace, and subresources are separate.
    emu.create(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ns-reader"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces/status"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
    )
    .unwrap();
    emu.create(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ns-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-reader"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:default"}]}))
        .unwrap();
    other.list(&Default::default()).await.unwrap();
    let (status, _) = raw(&bot, "GET", "/api/v1/namespaces/default/status", &[], None).await;
    assert_eq!(status, 200);
    let (status, body) = raw(&bot, "GET", "/api/v1/namespaces/default", &[], None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["details"],
        json!({"name": "default", "group": "", "kind": "namespaces"})
    );

    // No credentials: the anonymous user; a made-up token: 401.
    let anonymous = emu
        .kubeconfig_yaml()
        .replace(&format!("token: {}", admin_token(&emu)), "username: nobody");
    let anon = client_from(&anonymous).await;
    let (status, body) = raw(
        &anon,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:anonymous\"")
    );
    let (status, _) = raw(
        &anon,
        "GET",
        "/api/v1/namespaces",
        &[("authorization", "Bearer made-up")],
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A deleted ServiceAccount's tokens stop working.
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), "default")
        .delete("bot", &Default::default())
        .await
        .unwrap();
    let (status, _) = raw(
        &bot,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 401);
}

fn admin_token(emu: &kube_emulator::KubeEmulator) -> String {
    let yaml: Value = serde_yaml::from_str(&emu.kubeconfig_yaml()).unwrap();
    yaml["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string()
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
