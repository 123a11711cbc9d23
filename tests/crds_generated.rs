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
