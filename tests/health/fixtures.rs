//! The health a user sees, from the statuses the operator really writes: every fixture in
//! `tests/fixtures/health/` (captured from the e2e scenarios in `e2e.rs`) is run through the Argo
//! CD health script and the kstatus rules, and both results must be what the README's health table
//! says for that fixture — as must the fixture's own `Ready`/`Reconciling`/`Stalled` conditions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::argocd;
use crate::kstatus::{self, Status};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
}

pub fn load(name: &str) -> Value {
    let path = dir().join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_HEALTH_FIXTURES=1 writes it)",
            path.display()
        )
    });
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One row of the README's health table.
#[derive(Debug)]
pub struct Row {
    pub situation: String,
    pub fixture: String,
    /// `True`/`False`, and the reason when the cell names one.
    pub ready: (String, Option<String>),
    pub reconciling: String,
    pub stalled: String,
    pub argocd: String,
    pub kstatus: String,
}

/// The first backticked word of a cell, if any.
fn ticked(cell: &str) -> Option<String> {
    let start = cell.find('`')? + 1;
    let end = start + cell[start..].find('`')?;
    Some(cell[start..end].to_string())
}

fn first_word(cell: &str) -> String {
    cell.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '-')
        .to_string()
}

/// The table under the README heading "Health in Argo CD and Flux" whose header starts with
/// `| situation | fixture |`.
pub fn readme_rows() -> Vec<Row> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| situation | fixture |"));
    let header: Vec<String> = cells(lines.next().expect("the README's health table"));
    assert_eq!(
        header,
        [
            "situation",
            "fixture",
            "Ready",
            "Reconciling",
            "Stalled",
            "Argo CD",
            "kstatus (Flux)"
        ],
        "README health table columns"
    );
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let c = cells(l);
            Row {
                situation: c[0].clone(),
                fixture: ticked(&c[1]).expect("fixture name in backticks"),
                ready: (first_word(&c[2]), ticked(&c[2])),
                reconciling: first_word(&c[3]),
                stalled: first_word(&c[4]),
                argocd: first_word(&c[5]),
                kstatus: first_word(&c[6]),
            }
        })
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn status_of(obj: &Value, type_: &str) -> String {
    condition(obj, type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// `Reason: message` (or whichever is there), as the health script shows a condition.
fn described(c: &Value) -> String {
    let reason = c["reason"].as_str().unwrap_or_default();
    let message = c["message"].as_str().unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (_, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (false, false) => format!("{reason}: {message}"),
    }
}

/// The situations the issue names, each with at least one row.
const SITUATIONS: [&str; 6] = [
    "created and converging",
    "Ready",
    "stuck on a Graph 403",
    "stuck on a conflict",
    "waiting for consent",
    "being deleted",
];

#[test]
fn the_readme_table_covers_every_situation_and_fixture() {
    let rows = readme_rows();
    for situation in SITUATIONS {
        assert!(
            rows.iter().any(|r| r.situation.starts_with(situation)),
            "README health table has no row for {situation:?}"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "yaml").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = rows.iter().map(|r| r.fixture.clone()).collect();
    listed.sort();
    assert_eq!(listed, on_disk, "README rows and fixture files");
}

#[test]
fn every_fixture_reads_in_argo_cd_and_kstatus_as_the_readme_says() {
    let mut seen = BTreeMap::new();
    for row in readme_rows() {
        let obj = load(&row.fixture);
        let f = &row.fixture;
        // The conditions the fixture carries are the ones the table shows.
        let (ready_status, ready_reason) = &row.ready;
        assert_eq!(&status_of(&obj, "Ready"), ready_status, "{f}: Ready");
        if let Some(reason) = ready_reason {
            assert_eq!(
                condition(&obj, "Ready").unwrap()["reason"],
                reason.as_str(),
                "{f}: Ready reason"
            );
        }
        assert_eq!(
            status_of(&obj, "Reconciling"),
            row.reconciling,
            "{f}: Reconciling"
        );
        assert_eq!(status_of(&obj, "Stalled"), row.stalled, "{f}: Stalled");
        for type_ in ["Ready", "Reconciling", "Stalled"] {
            let c = condition(&obj, type_).unwrap();
            assert_eq!(
                c["observedGeneration"], obj["metadata"]["generation"],
                "{f}: {type_}.observedGeneration"
            );
            assert!(
                !c["reason"].as_str().unwrap_or_default().is_empty(),
                "{f}: {type_} has a reason"
            );
        }
        assert_eq!(
            obj["status"]["observedGeneration"], obj["metadata"]["generation"],
            "{f}: status.observedGeneration"
        );

        // Argo CD.
        let health = argocd::health(&obj);
        assert_eq!(
            health.status, row.argocd,
            "{f}: Argo CD health ({health:?})"
        );
        let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
        let decisive = match health.status.as_str() {
            "Degraded" => condition(&obj, "Stalled"),
            "Progressing" if !deleting => condition(&obj, "Reconciling"),
            "Healthy" | "Suspended" => condition(&obj, "Ready"),
            _ => None,
        };
        match decisive {
            Some(c) => assert_eq!(health.message, described(c), "{f}: Argo CD message"),
            None => assert_eq!(health.message, "Pending deletion", "{f}: Argo CD message"),
        }
        // The script gives the same answer without Argo CD's own deletion rule in front of it.
        assert_eq!(argocd::run_script(&argocd::script(), &obj), health, "{f}");

        // kstatus (Flux).
        let k = kstatus::compute(&obj);
        let expected = Status::parse(&row.kstatus)
            .unwrap_or_else(|| panic!("{f}: README kstatus {:?}", row.kstatus));
        assert_eq!(k.status, expected, "{f}: kstatus ({k:?})");
        if matches!(k.status, Status::Failed | Status::InProgress) {
            // The message a Flux user sees is the operator's own.
            let source = if k.status == Status::Failed {
                "Stalled"
            } else if status_of(&obj, "Reconciling") == "True" {
                "Reconciling"
            } else {
                "Ready"
            };
            assert_eq!(
                k.message,
                condition(&obj, source).unwrap()["message"],
                "{f}: kstatus message"
            );
            assert!(!k.message.is_empty(), "{f}: kstatus message is empty");
        }
        seen.insert(row.fixture.clone(), (health.status, k.status));
    }
    assert!(seen.len() >= SITUATIONS.len(), "{seen:?}");
}
