//! Validation at the door: every example is accepted by the generated CRDs (schema + CEL), and bad
//! input is rejected with a message that says what is wrong. Uses the kube emulator's validator, the
//! same code that serves `kubectl apply` in the sandbox.

use std::path::{Path, PathBuf};

use entra_operator::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::with::singleton_map_recursive::deserialize::<Value, _>(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The checked-in CRDs, by kind.
fn crd_for(kind: &str) -> Value {
    for entry in std::fs::read_dir(root().join("crds")).unwrap() {
        for doc in yaml_docs(&entry.unwrap().path()) {
            if doc["spec"]["names"]["kind"] == kind {
                return doc;
            }
        }
    }
    panic!("no CRD for kind {kind}")
}

fn validate(obj: &Value, old: Option<&Value>) -> Result<Value, String> {
    let kind = obj["kind"].as_str().unwrap();
    let crd = crd_for(kind);
    kube_emulator::validation::validate_object(&crd, obj, old).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[test]
fn every_example_validates_against_the_generated_crds() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in yaml_docs(&path) {
            let name = doc["metadata"]["name"].clone();
            let defaulted = validate(&doc, None)
                .unwrap_or_else(|e| panic!("{} {name} is invalid: {e}", path.display()));
            // What the API server stores is what the operator can read.
            let kind = doc["kind"].as_str().unwrap();
            let parsed = match kind {
                "AppRegistration" => {
                    serde_json::from_value::<AppRegistration>(defaulted).map(|_| ())
                }
                "BankClient" => serde_json::from_value::<BankClient>(defaulted).map(|_| ()),
                "TenantMapping" => serde_json::from_value::<TenantMapping>(defaulted).map(|_| ()),
                "NaaIntegration" => serde_json::from_value::<NaaIntegration>(defaulted).map(|_| ()),
                "EntraPolicy" => {
                    serde_json::from_value::<entra_operator::api::EntraPolicy>(defaulted)
                        .map(|_| ())
                }
                other => panic!("{}: unexpected kind {other}", path.display()),
            };
            parsed.unwrap_or_else(|e| {
                panic!("{} {name} does not parse as {kind}: {e}", path.display())
            });
            count += 1;
        }
    }
    assert!(
        count >= 12,
        "expected the platform example and one per kind, got {count} documents"
    );
}

#[test]
fn platform_example_declares_the_whole_setup() {
    let docs = yaml_docs(&root().join("examples/bookme-platform.yaml"));
    let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
    assert_eq!(count("AppRegistration"), 3);
    assert_eq!(count("BankClient"), 2);
    assert_eq!(count("TenantMapping"), 2);
    assert_eq!(count("NaaIntegration"), 1);
    let api = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "management-api")
        .unwrap();
    let roles: Vec<&str> = api["spec"]["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["Admin", "Configurator", "Manager", "Employee", "Customer"]
    );
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "TenantMapping"
                && d["spec"]["bankIds"].as_array().unwrap().len() == 2),
        "one tenant maps to two BankIds"
    );
}

#[test]
fn defaults_are_applied() {
    let bank = json!({
        "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"bankId": "b", "api": {"appRef": {"name": "api"}}, "secret": {"name": "s"}}
    });
    let out = validate(&bank, None).unwrap();
    assert_eq!(out["spec"]["api"]["role"], "System");
    assert_eq!(out["spec"]["secret"]["lifetime"], "730d");
    assert_eq!(out["spec"]["secret"]["renewBefore"], "60d");
    assert_eq!(out["spec"]["secret"]["overlap"], "UntilExpiry");
}

fn app(spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": "a", "namespace": "default"}, "spec": spec})
}

fn bank(spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
           "metadata": {"name": "b", "namespace": "default"}, "spec": spec})
}

fn tenant(spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "TenantMapping",
           "metadata": {"name": "t", "namespace": "default"}, "spec": spec})
}

fn naa(spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "NaaIntegration",
           "metadata": {"name": "n", "namespace": "default"}, "spec": spec})
}

const TENANT: &str = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

fn good_bank() -> Value {
    json!({"bankId": "nordbank", "api": {"appRef": {"name": "api"}}, "secret": {"name": "s"}})
}

fn with(mut base: Value, path: &[&str], value: Value) -> Value {
    let mut node = &mut base;
    for key in &path[..path.len() - 1] {
        node = &mut node[*key];
    }
    node[path[path.len() - 1]] = value;
    base
}

/// Each invalid document, the field the error must name, and words the message must contain.
fn invalid_cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "bankId with a space",
            bank(with(good_bank(), &["bankId"], json!("Nord Bank"))),
            "spec.bankId",
            "should match",
        ),
        (
            "empty bankId",
            bank(with(good_bank(), &["bankId"], json!(""))),
            "spec.bankId",
            "",
        ),
        (
            "duration that does not parse",
            bank(with(good_bank(), &["secret", "lifetime"], json!("2 years"))),
            "spec.secret.lifetime",
            "should match",
        ),
        (
            "lifetime over two years",
            bank(with(good_bank(), &["secret", "lifetime"], json!("800d"))),
            "spec.secret",
            "at most 730d",
        ),
        (
            "renewBefore not shorter than lifetime",
            bank(with(
                with(good_bank(), &["secret", "lifetime"], json!("30d")),
                &["secret", "renewBefore"],
                json!("720h"),
            )),
            "spec.secret",
            "renewBefore must be shorter than lifetime",
        ),
        (
            "overlap that is neither a duration nor UntilExpiry",
            bank(with(good_bank(), &["secret", "overlap"], json!("forever"))),
            "spec.secret.overlap",
            "should match",
        ),
        (
            "duplicate app role values",
            app(json!({"displayName": "x", "appRoles": [
                {"value": "Admin", "allowedMemberTypes": ["User"]},
                {"value": "Admin", "allowedMemberTypes": ["Application"]}]})),
            "spec.appRoles",
            "must be unique",
        ),
        (
            "app role value with a space",
            app(json!({"displayName": "x", "appRoles": [
                {"value": "Full Admin", "allowedMemberTypes": ["User"]}]})),
            "spec.appRoles[0].value",
            "should match",
        ),
        (
            "app role value over 120 characters",
            app(json!({"displayName": "x", "appRoles": [
                {"value": "R".repeat(121), "allowedMemberTypes": ["User"]}]})),
            "spec.appRoles[0].value",
            "120",
        ),
        (
            "duplicate scope values",
            app(json!({"displayName": "x", "api": {"scopes": [
                {"value": "Access"}, {"value": "Access"}]}})),
            "spec.api.scopes",
            "must be unique",
        ),
        (
            "unsupported sign-in audience",
            app(json!({"displayName": "x", "signInAudience": "Everyone"})),
            "spec.signInAudience",
            "Unsupported value",
        ),
        (
            "web redirect over plain http to a remote host",
            app(json!({"displayName": "x", "web": {"redirectUris": ["http://bookme.io/cb"]}})),
            "spec.web.redirectUris[0]",
            "should match",
        ),
        (
            "NAA redirect with a path",
            app(
                json!({"displayName": "x", "spa": {"redirectUris": ["brk-multihub://addin.bookme.io/x"]}}),
            ),
            "spec.spa.redirectUris[0]",
            "should match",
        ),
        (
            "adopt with an appId that is not a GUID",
            app(json!({"displayName": "x", "adopt": {"appId": "my-app"}})),
            "spec.adopt.appId",
            "should match",
        ),
        (
            "resource named twice",
            app(json!({"displayName": "x", "requiredResourceAccess": [
                {"wellKnownApi": "MicrosoftGraph", "appId": "00000003-0000-0000-c000-000000000000", "delegated": ["User.Read"]}]})),
            "spec.requiredResourceAccess[0]",
            "exactly one of wellKnownApi, appId or appRef",
        ),
        (
            "resource without permissions",
            app(
                json!({"displayName": "x", "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph"}]}),
            ),
            "spec.requiredResourceAccess[0]",
            "at least one permission",
        ),
        (
            "pre-authorized application without appRef or appId",
            app(
                json!({"displayName": "x", "api": {"preAuthorizedApplications": [{"scopes": ["Access"]}]}}),
            ),
            "spec.api.preAuthorizedApplications[0]",
            "exactly one of appRef",
        ),
        (
            "known client application with both appRef and appId",
            app(
                json!({"displayName": "x", "api": {"knownClientApplications": [
                {"appRef": {"name": "desktop"}, "appId": "7d3c1e2a-4b5f-4c6d-8e9f-0a1b2c3d4e5f"}]}}),
            ),
            "spec.api.knownClientApplications[0]",
            "exactly one of appRef",
        ),
        (
            "an owner user principal name without @",
            app(json!({"displayName": "x", "ownerUserPrincipalNames": ["alice"]})),
            "spec.ownerUserPrincipalNames[0]",
            "should match",
        ),
        (
            "an owner user principal name named twice",
            app(
                json!({"displayName": "x", "ownerUserPrincipalNames": ["a@contoso.com", "a@contoso.com"]}),
            ),
            "spec.ownerUserPrincipalNames",
            "must not repeat",
        ),
        (
            "more than 20 owner user principal names",
            app(json!({"displayName": "x", "ownerUserPrincipalNames":
                (0..21).map(|i| format!("u{i}@contoso.com")).collect::<Vec<_>>()})),
            "spec.ownerUserPrincipalNames",
            "",
        ),
        (
            "an ownersManagement that is not Additive or Exact",
            app(json!({"displayName": "x", "ownersManagement": "Everything"})),
            "spec.ownersManagement",
            "Additive",
        ),
        (
            "two passwords writing the same Secret",
            app(json!({"displayName": "x", "credentials": {"passwords": [
                {"secretName": "s"}, {"secretName": "s"}]}})),
            "spec.credentials.passwords",
            "own secretName",
        ),
        (
            "identifier URI with an unsupported scheme",
            app(json!({"displayName": "x", "identifierUris": ["ftp://bookme.io"]})),
            "spec.identifierUris",
            "api://",
        ),
        (
            "personal accounts with v1 tokens",
            app(
                json!({"displayName": "x", "signInAudience": "AzureADandPersonalMicrosoftAccount",
                       "api": {"requestedAccessTokenVersion": 1}}),
            ),
            "spec",
            "requestedAccessTokenVersion: 2",
        ),
        (
            "tenantId that is not a GUID",
            tenant(json!({"tenantId": "contoso", "bankIds": ["a"]})),
            "spec.tenantId",
            "should match",
        ),
        (
            "tenant mapped to no BankId",
            tenant(json!({"tenantId": TENANT, "bankIds": []})),
            "spec.bankIds",
            "at least 1",
        ),
        (
            "defaultBankId outside bankIds",
            tenant(json!({"tenantId": TENANT, "bankIds": ["a"], "defaultBankId": "b"})),
            "spec",
            "defaultBankId must be one of bankIds",
        ),
        (
            "add-in server given as a URL",
            naa(json!({"displayName": "x", "scope": "S.Access",
                       "addinServerFqdns": ["https://addin.bookme.io/taskpane"]})),
            "spec.addinServerFqdns[0]",
            "should match",
        ),
        (
            "a client secret living 2 seconds",
            app(json!({"displayName": "x", "credentials": {"passwords": [
                {"secretName": "s", "lifetime": "2s", "renewBefore": "1s"}]}})),
            "spec.credentials.passwords[0]",
            "lifetime must be at least 30s",
        ),
        (
            "a client secret due for rotation 5 seconds after it is made",
            app(json!({"displayName": "x", "credentials": {"passwords": [
                {"secretName": "s", "lifetime": "40s", "renewBefore": "35s"}]}})),
            "spec.credentials.passwords[0]",
            "lifetime - renewBefore must be at least 10s",
        ),
        (
            "a bank secret living 2 seconds",
            bank(with(
                good_bank(),
                &["secret"],
                json!({"name": "s", "lifetime": "2s", "renewBefore": "1s"}),
            )),
            "spec.secret",
            "lifetime must be at least 30s",
        ),
        (
            "NaaIntegration writing the bank-clients registry",
            naa(
                json!({"displayName": "x", "scope": "S.Access", "addinServerFqdns": ["addin.bookme.io"],
                       "configMapName": "bank-clients"}),
            ),
            "spec.configMapName",
            "must not be a registry's name",
        ),
        (
            "EntraPolicy rule naming two APIs",
            json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "EntraPolicy",
                   "metadata": {"name": "p"},
                   "spec": {"consent": [{"name": "r", "api": {"wellKnownApi": "MicrosoftGraph", "sameNamespace": true},
                                         "application": ["*"]}]}}),
            "spec.consent[0].api",
            "exactly one of wellKnownApi, appId or sameNamespace",
        ),
        (
            "NAA scope with a space",
            naa(
                json!({"displayName": "x", "scope": "Pexip Access", "addinServerFqdns": ["addin.bookme.io"]}),
            ),
            "spec.scope",
            "should match",
        ),
    ]
}

#[test]
fn invalid_documents_are_rejected_with_a_specific_message() {
    let cases = invalid_cases();
    assert!(cases.len() >= 15);
    for (what, doc, field, words) in cases {
        let err = match validate(&doc, None) {
            Ok(_) => panic!("{what}: accepted, should be rejected"),
            Err(e) => e,
        };
        assert!(
            err.contains(&format!("{field}:"))
                || err.contains(&format!("{field}["))
                || err.starts_with(field),
            "{what}: error should name {field}: {err}"
        );
        assert!(
            err.contains(words),
            "{what}: error should say {words:?}: {err}"
        );
    }
}

#[test]
fn immutable_fields_cannot_change() {
    let old = bank(good_bank());
    let new = bank(with(good_bank(), &["bankId"], json!("otherbank")));
    let err = validate(&new, Some(&old)).unwrap_err();
    assert!(err.contains("bankId is immutable"), "{err}");
    // The same update that keeps bankId is fine.
    let same = bank(with(
        good_bank(),
        &["secret", "name"],
        json!("other-secret"),
    ));
    validate(&same, Some(&old)).unwrap();

    let old = tenant(json!({"tenantId": TENANT, "bankIds": ["a"]}));
    let new = tenant(json!({"tenantId": "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d", "bankIds": ["a"]}));
    let err = validate(&new, Some(&old)).unwrap_err();
    assert!(err.contains("tenantId is immutable"), "{err}");

    let old = app(
        json!({"displayName": "x", "adopt": {"appId": "00000000-0000-0000-0000-000000000001"}}),
    );
    let new = app(
        json!({"displayName": "x", "adopt": {"appId": "00000000-0000-0000-0000-000000000002"}}),
    );
    let err = validate(&new, Some(&old)).unwrap_err();
    assert!(err.contains("spec.adopt is immutable"), "{err}");
}

#[test]
fn day_durations_compare_correctly_in_cel() {
    // CEL has no day unit; the rule converts days to hours. 1d12h < 2d, and 36h == 1d12h.
    let ok = bank(with(
        with(good_bank(), &["secret", "lifetime"], json!("2d")),
        &["secret", "renewBefore"],
        json!("1d12h"),
    ));
    validate(&ok, None).unwrap();
    let bad = bank(with(
        with(good_bank(), &["secret", "lifetime"], json!("1d12h")),
        &["secret", "renewBefore"],
        json!("36h"),
    ));
    assert!(validate(&bad, None).is_err());
    let max = bank(with(good_bank(), &["secret", "lifetime"], json!("730d")));
    validate(&max, None).unwrap();
    let over = bank(with(good_bank(), &["secret", "lifetime"], json!("729d25h")));
    assert!(validate(&over, None).is_err());
}
