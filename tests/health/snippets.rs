//! The shipped Argo CD configuration carries the tested script, for every kind the CRDs define.

use std::path::PathBuf;

use serde_json::Value;

use crate::argocd;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

/// `<group>_<Kind>` of every CRD in `crds/` that has a status (the form of Argo CD's argocd-cm
/// health keys). `EntraPolicy` has none: Argo CD's default (healthy once applied) is right for it.
fn crd_keys() -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(root().join("crds"))
        .unwrap()
        .filter_map(|e| {
            let crd: Value =
                serde_yaml::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
            crd["spec"]["versions"][0]["subresources"]["status"]
                .is_object()
                .then_some(crd)
        })
        .map(|crd| {
            format!(
                "{}_{}",
                crd["spec"]["group"].as_str().unwrap(),
                crd["spec"]["names"]["kind"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    keys
}

fn health_keys(data: &Value) -> Vec<String> {
    let mut keys: Vec<String> = data
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            k.strip_prefix("resource.customizations.health.")
                .unwrap_or_else(|| panic!("unexpected key {k}"))
                .to_string()
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn argocd_cm_snippet_and_argo_cd_chart_values_carry_the_tested_script_for_every_kind() {
    let script = argocd::script();
    assert_eq!(crd_keys().len(), 4);
    let cm = yaml("deploy/argocd/argocd-cm.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let values = yaml("deploy/argocd/argo-cd-values.yaml");
    for data in [&cm["data"], &values["configs"]["cm"]] {
        assert_eq!(health_keys(data), crd_keys());
        for (key, value) in data.as_object().unwrap() {
            assert_eq!(value.as_str(), Some(script.as_str()), "{key} is health.lua");
        }
    }
}

/// `examples/bookme-platform.yaml`'s Argo CD sync waves put every referenced AppRegistration in the
/// same or an earlier wave than what references it, and the TenantMappings (which may wait days for
/// a customer's consent) after everything else.
#[test]
fn the_platform_examples_sync_waves_order_references_first_and_tenant_mappings_last() {
    let text = std::fs::read_to_string(root().join("examples/bookme-platform.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let wave = |doc: &Value| -> i64 {
        doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no sync wave", doc["metadata"]["name"]))
            .parse()
            .unwrap()
    };
    let app_wave = |name: &str| -> i64 {
        wave(
            docs.iter()
                .find(|d| d["kind"] == "AppRegistration" && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no AppRegistration {name}")),
        )
    };
    // Every appRef anywhere in a spec.
    fn app_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(name) = m.get("appRef").and_then(|r| r["name"].as_str()) {
                    out.push(name.to_string());
                }
                m.values().for_each(|x| app_refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| app_refs(x, out)),
            _ => {}
        }
    }
    let mut checked = 0;
    for doc in &docs {
        let mut refs = Vec::new();
        app_refs(&doc["spec"], &mut refs);
        for r in refs {
            assert!(
                app_wave(&r) <= wave(doc),
                "{} {} (wave {}) references {r} (wave {})",
                doc["kind"],
                doc["metadata"]["name"],
                wave(doc),
                app_wave(&r)
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} references");
    let last_other = docs
        .iter()
        .filter(|d| d["kind"] != "TenantMapping")
        .map(wave)
        .max()
        .unwrap();
    for tm in docs.iter().filter(|d| d["kind"] == "TenantMapping") {
        assert!(wave(tm) > last_other, "TenantMappings come last");
    }
}

/// The README's troubleshooting table says, for each `Ready` reason, which kstatus condition it sets;
/// the operator's classification must agree.
#[test]
fn the_readme_troubleshooting_table_matches_the_operators_classification() {
    use entra_operator::api::condition::READY;
    use entra_operator::controllers::conditions::DesiredCondition;
    use entra_operator::controllers::kstatus::{Progress, progress};
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| reason | kstatus |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let expected = match cells[1] {
            "Reconciling" => Progress::InFlight,
            "Stalled" => Progress::NeedsHuman,
            "neither" => Progress::AwaitingOthers,
            other => panic!("unexpected kstatus cell {other:?} in {row}"),
        };
        let reasons: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
        assert!(!reasons.is_empty(), "{row}");
        for reason in reasons {
            let ready = DesiredCondition::failed(READY, reason, "m");
            assert_eq!(progress(&ready), expected, "{reason}");
        }
    }
}
