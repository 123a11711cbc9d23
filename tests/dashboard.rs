//! The chart's Grafana dashboard (charts/entra-operator/dashboards/entra-operator.json) queries only
//! metrics the operator serves: every metric name in its PromQL is a sample name on `/metrics` of the
//! admin server.

use std::collections::BTreeSet;
use std::sync::Arc;

use entra_operator::metrics::{
    CredentialLabels, GraphRequestLabels, KindLabels, Metrics, ReconcileLabels,
};
use entra_operator::runtime::admin::{Readiness, serve_admin};
use serde_json::Value;

fn dashboard() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/entra-operator/dashboards/entra-operator.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and query variables.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            // Grafana's `label_values(<metric>, <label>)` names a metric.
            let q = var["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .expect("label_values(metric, label)");
            out.push(inner.trim().to_string());
        }
    }
    out
}

/// PromQL keywords and aggregation operators (an aggregation may be followed by `by (...)` before
/// its parenthesis, so it is not always recognisable as a call).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
];

/// The metric names a PromQL expression selects: identifiers that are not functions or aggregations
/// (followed by `(`), keywords, label matchers (inside `{}`), grouping labels (in `by (...)`),
/// durations (inside `[]`), strings, numbers or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if grouping_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                grouping_next = false;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let call = j < chars.len() && chars[j] == '(';
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                {
                    grouping_next = true;
                } else if !call && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_query_parser_finds_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.95, sum by (le, kind) (rate(a_bucket{result!="x{y}"}[$__rate_interval]))) or vector(0) - time() * 86400 + b_total"#
        ),
        BTreeSet::from(["a_bucket".to_string(), "b_total".to_string()])
    );
}

/// The sample names `/metrics` serves once every family has a series.
async fn served_names() -> BTreeSet<String> {
    let metrics = Arc::new(Metrics::new());
    let cred = CredentialLabels {
        kind: "AppRegistration",
        namespace: "ns".into(),
        name: "app".into(),
        secret: "s".into(),
        credential: "password",
    };
    metrics.credential_expiry.get_or_create(&cred).set(2e9);
    metrics
        .credential_next_rotation
        .get_or_create(&cred)
        .set(2e9);
    metrics.rotations.get_or_create(&cred).inc();
    metrics.rotation_failures.get_or_create(&cred).inc();
    metrics.resource_ready.get_or_create(&cred).set(1);
    metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: "AppRegistration",
            result: "success",
        })
        .inc();
    metrics
        .reconcile_duration
        .get_or_create(&KindLabels {
            kind: "AppRegistration",
        })
        .observe(0.1);
    metrics
        .graph_requests
        .get_or_create(&GraphRequestLabels {
            method: "GET",
            status: "200".into(),
        })
        .inc();
    metrics.graph_throttled.inc();
    metrics.set_tenant_consent("ns", "tm", "t", &[("app".into(), true)]);

    let (addr, _server) = serve_admin(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Arc::new(Readiness::default()),
        std::future::pending(),
    )
    .await
    .unwrap();
    let body = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        body.to_string()
    };
    let mut families = BTreeSet::new();
    let mut samples = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap();
            samples.insert(line[..end].to_string());
        }
    }
    // Every family has a series here, so the sample names are complete.
    for family in &families {
        assert!(
            samples.iter().any(|s| s.starts_with(family.as_str())),
            "family {family} has no sample: set one in this test"
        );
    }
    samples
}

#[tokio::test]
async fn every_dashboard_query_uses_metrics_the_operator_serves() {
    let served = served_names().await;
    let dash = dashboard();
    let queries = queries(&dash);
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "no metric in {q}");
        for name in names {
            assert!(
                served.contains(&name),
                "{name} (in `{q}`) is not served on /metrics; served: {served:?}"
            );
            used.insert(name);
        }
    }
    // The dashboard covers each area the chart promises.
    for needed in [
        "entra_operator_credential_expiry_timestamp_seconds",
        "entra_operator_credential_rotations_total",
        "entra_operator_credential_rotation_failures_total",
        "entra_operator_reconciles_total",
        "entra_operator_graph_requests_total",
        "entra_operator_graph_throttled_total",
        "entra_operator_tenant_app_consented",
    ] {
        assert!(used.contains(needed), "no panel uses {needed}");
    }
}
