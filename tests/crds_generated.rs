//! The checked-in `crds/` must equal what the types generate: the types are the single source of the
//! schema. Regenerate with `cargo run -- crd --out-dir crds`.

use entra_operator::api::{crd_file_name, crd_yaml, crds, crds_yaml};

#[test]
fn checked_in_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for crd in crds() {
        let name = crd_file_name(&crd);
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
            panic!("crds/{name} is missing ({e}); run `cargo run -- crd --out-dir crds`")
        });
        assert_eq!(
            on_disk,
            crd_yaml(&crd).unwrap(),
            "crds/{name} differs from the generated CRD; run `cargo run -- crd --out-dir crds`"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files no type generates"
    );
}

#[test]
fn crd_command_prints_all_four_kinds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .arg("crd")
        .output()
        .expect("run entra-operator crd");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, crds_yaml().unwrap());
    for kind in [
        "AppRegistration",
        "BankClient",
        "TenantMapping",
        "NaaIntegration",
    ] {
        assert!(text.contains(&format!("kind: {kind}\n")), "missing {kind}");
    }
}

/// Every `x-kubernetes-validations` rule of the generated CRDs, with the cost kube-apiserver
/// estimates for it when the CRD is created (`cargo test --test crds_generated -- --nocapture`
/// prints the table). A real API server refuses a CRD whose rule exceeds 10,000,000
/// (`StaticEstimatedCostLimit`) or whose rules total more than 100,000,000; we keep every rule
/// under the runtime per-call limit (1,000,000, ten times below the static limit) so a full list
/// also evaluates within budget.
#[test]
fn every_rule_is_within_the_api_servers_cost_budget_with_margin() {
    use kube_emulator::cel_cost::{
        PER_CALL_LIMIT, STATIC_ESTIMATED_COST_LIMIT, STATIC_ESTIMATED_CRD_COST_LIMIT,
        crd_cost_errors, rule_costs,
    };
    let mut rows = 0;
    for crd in crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let costs = rule_costs(schema, "spec.validation.openAPIV3Schema");
        let mut total = 0u64;
        for rc in &costs {
            println!(
                "{name}\t{}\tcost {} (per call {} x {})",
                rc.path
                    .trim_start_matches("spec.validation.openAPIV3Schema"),
                rc.cost,
                rc.max_cost,
                rc.cardinality
            );
            assert!(
                rc.cost <= PER_CALL_LIMIT && rc.cost * 10 <= STATIC_ESTIMATED_COST_LIMIT,
                "{name} {}: estimated cost {} is too close to (or over) the API server's limit {STATIC_ESTIMATED_COST_LIMIT}: {}",
                rc.path,
                rc.cost,
                rc.rule
            );
            total += rc.cost;
            rows += 1;
        }
        println!("{name}\ttotal {total}");
        assert!(
            total * 10 <= STATIC_ESTIMATED_CRD_COST_LIMIT,
            "{name}: total {total}"
        );
        assert_eq!(crd_cost_errors(&crd), vec![], "{name}");
    }
    assert!(rows >= 20, "expected every rule to be listed, found {rows}");
}
