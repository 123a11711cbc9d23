"""The Helm chart, rendered by the real Helm v4 engine (helm-python-sdk binds libhelm_c, no helm binary),
and every manifest checked against the Kubernetes OpenAPI schemas (kubernetes-validate).

Run: bash conformance/helm/run.sh
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "entra-operator"
REPO_CRDS = ROOT / "crds"
RELEASE = "entra-operator"
NAMESPACE = "entra-system"

# Kubernetes versions the manifests must be valid for: the oldest we claim (Chart.yaml kubeVersion is
# >=1.28, but 1.30 is the oldest bundled schema we test) and the newest kubernetes-validate knows.
KUBE_VERSIONS = sorted({"1.30.0", kubernetes_validate.latest_version()})

# Kinds that kubernetes-validate has no schema for (Prometheus Operator CRDs). They are checked by the
# dedicated tests below instead.
KINDS_WITHOUT_SCHEMA = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "workload-identity": {
        "azure": {"workloadIdentity": {"enabled": True}, "clientId": CLIENT_ID, "tenantId": TENANT_ID}
    },
    "client-secret": {
        "azure": {
            "clientId": CLIENT_ID,
            "tenantId": TENANT_ID,
            "clientSecret": {"existingSecret": "entra-operator-credentials", "key": "secret"},
        }
    },
    "certificate": {
        "azure": {
            "clientId": CLIENT_ID,
            "tenantId": TENANT_ID,
            "clientCertificate": {"existingSecret": "entra-operator-cert", "key": "client.pem"},
        }
    },
    "namespaced": {"watchNamespaces": ["bank-a", "bank-b"]},
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
    },
    "dashboard": {"grafanaDashboard": {"enabled": True}},
    "single-replica": {
        "replicas": 1,
        "leaderElection": {"enabled": False},
        "extraCA": {"configMap": "entra-ca"},
        "logFormat": "text",
        "image": {"digest": "sha256:" + "a" * 64},
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    },
}


# ---------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@functools.lru_cache(maxsize=None)
def _render_cached(values_json: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
    with helm.Chart.load(CHART_DIR) as c:
        files = c.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return files, tuple(objects)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rendered objects (a deep copy, so tests may poke at them)."""
    return copy.deepcopy(list(_render_cached(json.dumps(values or {}, sort_keys=True))[1]))


def notes(values: dict[str, Any] | None = None) -> str:
    files = _render_cached(json.dumps(values or {}, sort_keys=True))[0]
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return c


def env(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objects)["env"]}


def leaves(values: dict[str, Any], documented: set[str], prefix: str = "") -> list[str]:
    """Value paths as documented: a key whose path is documented is a leaf, else recurse into maps."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in documented or not isinstance(value, dict) or not value:
            out.append(path)
        else:
            out.extend(leaves(value, documented, path + "."))
    return out


def readme_rows() -> dict[str, str]:
    rows = {}
    for line in (CHART_DIR / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([A-Za-z0-9_.]+)` \| (.*?) \| (.+) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


# ---------------------------------------------------------------------------------------------------
# lint, render, validate


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_has_no_warnings_or_errors(variant):
    report = helm.lint(CHART_DIR, VARIANTS[variant], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_validates_against_kubernetes_schemas(variant):
    objects = render(VARIANTS[variant])
    assert objects
    skipped = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in KINDS_WITHOUT_SCHEMA:
            skipped.add(key)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {e}")
    if variant == "monitoring":
        assert skipped == KINDS_WITHOUT_SCHEMA
    else:
        assert skipped == set()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_labelled_and_namespaced_where_it_should_be(variant):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for obj in render(VARIANTS[variant]):
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in meta
        else:
            assert meta.get("namespace"), f"{obj['kind']}/{meta['name']} has no namespace"


@pytest.mark.parametrize("variant", VARIANTS)
def test_notes_render(variant):
    text = notes(VARIANTS[variant])
    assert f"deployment/{RELEASE}" in text
    assert "<no value>" not in text


# ---------------------------------------------------------------------------------------------------
# CRDs


def test_chart_crds_are_byte_identical_to_repository_crds():
    repo = {p.name: p.read_bytes() for p in REPO_CRDS.glob("*.yaml")}
    chart_crds = {p.name: p.read_bytes() for p in (CHART_DIR / "crds").glob("*.yaml")}
    assert len(repo) == 5
    hint = "refresh with: cp crds/*.yaml charts/entra-operator/crds/"
    assert sorted(chart_crds) == sorted(repo), hint
    for name, data in repo.items():
        assert chart_crds[name] == data, f"{name} differs from crds/{name}; {hint}"


def test_helm_loads_the_crds_unchanged_and_they_validate(chart):
    loaded = chart.crds
    assert len(loaded) == 5
    repo = {p.name: p.read_text() for p in REPO_CRDS.glob("*.yaml")}
    names = set()
    for crd in loaded:
        filename = Path(crd["filename"]).name
        assert crd["data"] == repo[filename] or yaml.safe_load(crd["data"]) == yaml.safe_load(
            repo[filename]
        )
        obj = yaml.safe_load(crd["data"])
        assert obj["kind"] == "CustomResourceDefinition"
        assert obj["spec"]["group"] == "entra.bookme.io"
        names.add(obj["metadata"]["name"])
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert names == {
        "appregistrations.entra.bookme.io",
        "bankclients.entra.bookme.io",
        "tenantmappings.entra.bookme.io",
        "naaintegrations.entra.bookme.io",
        "entrapolicies.entra.bookme.io",
    }


def test_templates_do_not_also_render_crds():
    assert of_kind(render(), "CustomResourceDefinition") == []


# ---------------------------------------------------------------------------------------------------
# values.schema.json


BAD_VALUES = {
    "logFormat-xml": {"logFormat": "xml"},
    "unknown-top-level-key": {"replicaCount": 3},
    "unknown-nested-key": {"azure": {"workloadIdentity": {"enabled": True, "clientId": "x"}}},
    "zero-replicas": {"replicas": 0},
    "bad-namespace": {"watchNamespaces": ["Bank_A"]},
    "bad-resync": {"resyncPeriod": "soon"},
    "string-concurrency": {"concurrency": "4"},
    "bad-pull-policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad-service-type": {"service": {"type": "ExternalName"}},
    "bad-quantity": {"resources": {"limits": {"memory": "lots"}}},
    "dashboard-enabled-string": {"grafanaDashboard": {"enabled": "yes"}},
    "dashboard-bad-label": {"grafanaDashboard": {"sidecarLabel": "has space"}},
    "dashboard-bad-namespace": {"grafanaDashboard": {"namespace": "Not_A_Namespace"}},
    "dashboard-unknown-key": {"grafanaDashboard": {"folder": "Identity"}},
    "sql-in-table-name": {"registry": {"database": {"bankClientsTable": "t; DROP TABLE x"}}},
    "bad-handover-format": {"handover": {"webhook": {"format": "slack"}}},
    "bad-confirm-delay": {"handover": {"confirmDelay": "soon"}},
    "webhook-url-as-a-value": {"handover": {"webhook": {"url": "https://example.webhook.office.com/x"}}},
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects_bad_values(chart, case):
    values = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART_DIR, values, namespace=NAMESPACE)
    assert report["errors"], f"lint accepted {values}"


def test_schema_rejects_a_values_file_with_an_unknown_key(chart, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text("logFormat: json\nwatchNamespace: [bank-a]\n")
    values = helm.values_from_yaml(values_file.read_text())
    with pytest.raises(helm.HelmValuesError, match="watchNamespace"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_is_draft07_and_closed(chart):
    schema = chart.schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(chart.values)

    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<top>'} is not closed"
            for key, sub in node["properties"].items():
                walk(sub, f"{path}.{key}" if path else key)
        assert node.get("description") or not path, f"{path} has no description"

    walk(schema, "")
    assert schema["properties"]["logFormat"]["enum"] == ["json", "text"]


def test_schema_covers_every_value(chart):
    schema = chart.schema
    documented = set(readme_rows())
    for path in leaves(chart.values, documented):
        node = schema
        for key in path.split("."):
            assert key in node.get("properties", {}), f"{path} is not in values.schema.json"
            node = node["properties"][key]


def test_readme_lists_every_value_with_its_default(chart):
    rows = readme_rows()
    paths = leaves(chart.values, set(rows))
    assert set(paths) == set(rows), "README values table and values.yaml differ"
    for path in paths:
        value = chart.values
        for key in path.split("."):
            value = value[key]
        cell = rows[path]
        if isinstance(value, str):
            assert cell == (f"`{value}`" if value else '`""`'), path
        else:
            assert cell.startswith("`") and cell.endswith("`"), path
            assert json.loads(cell[1:-1]) == value, path


def test_readme_gives_the_crd_refresh_command():
    assert "cp crds/*.yaml charts/entra-operator/crds/" in (CHART_DIR / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------
# Deployment


RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_security_context_is_restricted(variant):
    objects = render(VARIANTS[variant])
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(objects)["securityContext"]
    for key, want in RESTRICTED_CONTAINER.items():
        assert sc[key] == want, key
    assert not sc.get("capabilities", {}).get("add")
    assert not sc.get("privileged")
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # Pod Security "restricted" allows only these volume types.
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= allowed, volume
    assert not any("ports" in c and any("hostPort" in p for p in c["ports"]) for c in pod["containers"])


def test_probes_ports_and_service():
    objects = render()
    c = container(objects)
    assert c["ports"] == [{"name": "admin", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["args"] == ["run"]
    svc = one(objects, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}
    ]
    deploy = one(objects, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    for key, value in svc["spec"]["selector"].items():
        assert pod_labels[key] == value
    assert deploy["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]


def test_admin_port_value_moves_port_and_address():
    objects = render({"admin": {"port": 9090}})
    assert container(objects)["ports"][0]["containerPort"] == 9090
    assert env(objects)["ADMIN_ADDR"]["value"] == "0.0.0.0:9090"


def test_default_resources_replicas_and_image(chart):
    objects = render()
    deploy = one(objects, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert container(objects)["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert container(objects)["image"] == f"ghcr.io/bookme/entra-operator:{chart.metadata['appVersion']}"
    assert "BENCHMARKS.md" in (CHART_DIR / "values.yaml").read_text()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


def test_default_env_matches_the_operator_defaults():
    e = env(render())
    assert {k: v["value"] for k, v in e.items() if "value" in v} == {
        "WATCH_NAMESPACES": "",
        "CONCURRENCY": "16",
        "RESYNC_PERIOD": "1h",
        "UNIQUE_NAME_PREFIX": "entra-operator",
        "GRAPH_ENDPOINT": "https://graph.microsoft.com",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "ADMIN_ADDR": "0.0.0.0:8080",
        "LEADER_ELECTION": "true",
        "LEASE_NAME": RELEASE,
        "HANDOVER_CONFIRM_DELAY": "5m",
    }
    assert e["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert e["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_ID", "ENTRA_CA_FILE",
                 "HANDOVER_WEBHOOK_URL", "HANDOVER_WEBHOOK_FORMAT"):
        assert name not in e


def test_env_follows_values():
    e = env(
        render(
            {
                "watchNamespaces": ["bank-a", "bank-b", "bank-a"],
                "concurrency": 8,
                "resyncPeriod": "30m",
                "uniqueNamePrefix": "bookme-prod",
                "graphEndpoint": "https://graph.microsoft.us",
                "azure": {"authorityHost": "https://login.microsoftonline.us"},
                "logLevel": "entra_operator=debug,kube=info",
                "leaderElection": {"leaseName": "entra-leader"},
            }
        )
    )
    values = {k: v.get("value") for k, v in e.items()}
    assert values["WATCH_NAMESPACES"] == "bank-a,bank-b"
    assert values["CONCURRENCY"] == "8"
    assert values["RESYNC_PERIOD"] == "30m"
    assert values["UNIQUE_NAME_PREFIX"] == "bookme-prod"
    assert values["GRAPH_ENDPOINT"] == "https://graph.microsoft.us"
    assert values["AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.us"
    assert values["LOG_LEVEL"] == "entra_operator=debug,kube=info"
    assert values["LEASE_NAME"] == "entra-leader"


def test_single_replica_variant():
    objects = render(VARIANTS["single-replica"])
    e = env(objects)
    assert e["LEADER_ELECTION"]["value"] == "false"
    assert e["LOG_FORMAT"]["value"] == "text"
    assert e["RUST_BACKTRACE"]["value"] == "1"
    assert e["ENTRA_CA_FILE"]["value"] == "/etc/entra-operator/ca/ca.crt"
    assert container(objects)["image"] == "ghcr.io/bookme/entra-operator@sha256:" + "a" * 64
    assert {"name": "extra-ca", "mountPath": "/etc/entra-operator/ca", "readOnly": True} in container(
        objects
    )["volumeMounts"]
    assert of_kind(objects, "PodDisruptionBudget") == []
    assert of_kind(objects, "Lease") == []
    assert all("leader-election" not in o["metadata"]["name"] for o in objects)


def test_several_replicas_without_leader_election_are_refused(chart):
    with pytest.raises(helm.HelmRenderError, match="leaderElection"):
        chart.render({"leaderElection": {"enabled": False}}, name=RELEASE, namespace=NAMESPACE)


# ---------------------------------------------------------------------------------------------------
# Azure credentials


def test_workload_identity_annotates_the_service_account_and_labels_the_pod():
    objects = render(VARIANTS["workload-identity"])
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == CLIENT_ID
    assert sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"] == TENANT_ID
    deploy = one(objects, "Deployment")
    assert deploy["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    # The label must not be in the selector: selectors are immutable, and switching modes must upgrade.
    assert "azure.workload.identity/use" not in deploy["spec"]["selector"]["matchLabels"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    e = env(objects)
    assert e["AZURE_CLIENT_ID"]["value"] == CLIENT_ID
    assert "AZURE_CLIENT_SECRET" not in e and "AZURE_CLIENT_CERTIFICATE_PATH" not in e
    assert "workload identity" in notes(VARIANTS["workload-identity"])


def test_without_workload_identity_there_is_no_label_or_annotation():
    objects = render()
    assert "annotations" not in one(objects, "ServiceAccount")["metadata"]
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert "azure.workload.identity/use" not in labels


def test_extra_service_account_annotations_are_kept_with_workload_identity():
    values = copy.deepcopy(VARIANTS["workload-identity"])
    values["serviceAccount"] = {"annotations": {"example.com/owner": "platform"}}
    annotations = one(render(values), "ServiceAccount")["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "platform"
    assert annotations["azure.workload.identity/client-id"] == CLIENT_ID


def test_client_secret_comes_from_the_existing_secret():
    objects = render(VARIANTS["client-secret"])
    e = env(objects)
    assert e["AZURE_CLIENT_SECRET"] == {
        "name": "AZURE_CLIENT_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "entra-operator-credentials", "key": "secret"}},
    }
    assert e["AZURE_TENANT_ID"]["value"] == TENANT_ID
    assert e["AZURE_CLIENT_ID"]["value"] == CLIENT_ID
    assert "azure.workload.identity/use" not in one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]


def test_registry_database_url_comes_from_the_existing_secret():
    e = env(render({"registry": {"database": {"existingSecret": "orgs-db", "key": "dsn", "migrate": True,
                                               "bankClientsTable": "dbo.BankClients"}}}))
    assert e["REGISTRY_DATABASE_URL"] == {
        "name": "REGISTRY_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "orgs-db", "key": "dsn"}},
    }
    assert e["REGISTRY_DATABASE_MIGRATE"]["value"] == "true"
    assert e["REGISTRY_BANK_CLIENTS_TABLE"]["value"] == "dbo.BankClients"
    assert e["REGISTRY_TENANT_MAPPINGS_TABLE"]["value"] == "tenant_bank_mappings"
    assert not any(k.startswith("REGISTRY_") for k in env(render()))


def test_handover_webhook_url_comes_from_the_existing_secret():
    e = env(render({"handover": {"confirmDelay": "10m",
                                 "webhook": {"existingSecret": "bank-ops-teams", "key": "webhook", "format": "teams"}}}))
    # The URL is a credential: only ever a reference to the Secret, never a value in the manifest.
    assert e["HANDOVER_WEBHOOK_URL"] == {
        "name": "HANDOVER_WEBHOOK_URL",
        "valueFrom": {"secretKeyRef": {"name": "bank-ops-teams", "key": "webhook"}},
    }
    assert e["HANDOVER_WEBHOOK_FORMAT"]["value"] == "teams"
    assert e["HANDOVER_CONFIRM_DELAY"]["value"] == "10m"


def test_certificate_is_mounted_read_only_and_pointed_at():
    objects = render(VARIANTS["certificate"])
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "entra-operator-cert"
    assert volume["secret"]["items"] == [{"key": "client.pem", "path": "client.pem"}]
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    e = env(objects)
    assert e["AZURE_CLIENT_CERTIFICATE_PATH"]["value"] == mount["mountPath"] + "/client.pem"
    assert e["AZURE_TENANT_ID"]["value"] == TENANT_ID
    assert "AZURE_CLIENT_SECRET" not in e


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {
                "azure": {
                    "workloadIdentity": {"enabled": True},
                    "clientId": CLIENT_ID,
                    "clientSecret": {"existingSecret": "s"},
                }
            },
            "choose one credential mode",
        ),
        ({"azure": {"workloadIdentity": {"enabled": True}}}, "azure.clientId is required"),
        (
            {"azure": {"clientId": CLIENT_ID, "clientCertificate": {"existingSecret": "c"}}},
            "azure.tenantId is required",
        ),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_inconsistent_values_fail_to_render(chart, values, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_existing_service_account_is_used_and_not_created():
    objects = render({"serviceAccount": {"create": False, "name": "platform-sa"}})
    assert of_kind(objects, "ServiceAccount") == []
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "platform-sa", "namespace": NAMESPACE}]


# ---------------------------------------------------------------------------------------------------
# RBAC


CR_PLURALS = {"appregistrations", "bankclients", "tenantmappings", "naaintegrations"}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) a rule list allows."""
    out = set()
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), "wildcards grant more than the operator uses"
                    out.add((group, resource, verb))
    return out


# Exactly what the operator's calls need (see the comments in templates/_helpers.tpl).
EXPECTED_WATCH_GRANTS = (
    {("entra.bookme.io", "appregistrations", v) for v in ("get", "list", "watch", "create", "patch", "delete")}
    | {
        ("entra.bookme.io", p, v)
        for p in CR_PLURALS - {"appregistrations"}
        for v in ("get", "list", "watch", "patch")
    }
    | {("entra.bookme.io", f"{p}/status", "patch") for p in CR_PLURALS}
    | {("entra.bookme.io", "appregistrations/status", "update")}
    | {("entra.bookme.io", f"{p}/finalizers", "update") for p in CR_PLURALS}
    | {("", "secrets", v) for v in ("get", "list", "watch", "create", "patch")}
    | {("", "configmaps", v) for v in ("get", "create", "patch")}
    | {("events.k8s.io", "events", v) for v in ("create", "patch")}
)
EXPECTED_LEASE_GRANTS = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
# The cluster administrator's EntraPolicies (read-only; watched, so a change applies at once) and the
# namespaces' labels they select by.
EXPECTED_POLICY_GRANTS = {("entra.bookme.io", "entrapolicies", v) for v in ("get", "list", "watch")} | {
    ("", "namespaces", "get")
}


def binds_to_operator(binding: dict[str, Any], role_kind: str, role_name: str) -> None:
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role_kind,
        "name": role_name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_cluster_rbac_when_watching_all_namespaces():
    objects = render()
    cluster_role = one(objects, "ClusterRole")
    assert grants(cluster_role["rules"]) == EXPECTED_WATCH_GRANTS | EXPECTED_POLICY_GRANTS
    binds_to_operator(one(objects, "ClusterRoleBinding"), "ClusterRole", cluster_role["metadata"]["name"])
    # The only namespaced Role is the leader-election one, in the release namespace.
    (role,) = of_kind(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role["rules"]) == EXPECTED_LEASE_GRANTS
    (binding,) = of_kind(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    binds_to_operator(binding, "Role", role["metadata"]["name"])


def test_namespaced_rbac_has_no_cluster_wide_access():
    objects = render(VARIANTS["namespaced"])
    # Cluster-wide, only reading the EntraPolicies (cluster-scoped) and namespace labels.
    cluster_role = one(objects, "ClusterRole")
    assert grants(cluster_role["rules"]) == EXPECTED_POLICY_GRANTS
    binds_to_operator(one(objects, "ClusterRoleBinding"), "ClusterRole", cluster_role["metadata"]["name"])
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind(objects, "Role")}
    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in of_kind(objects, "RoleBinding")}
    assert set(roles) == set(bindings)
    secret_namespaces = set()
    for (ns, name), role in roles.items():
        g = grants(role["rules"])
        if g == EXPECTED_LEASE_GRANTS:
            assert ns == NAMESPACE
        else:
            assert g == EXPECTED_WATCH_GRANTS
            secret_namespaces.add(ns)
        binds_to_operator(bindings[(ns, name)], "Role", name)
    assert secret_namespaces == {"bank-a", "bank-b"}
    assert env(objects)["WATCH_NAMESPACES"]["value"] == "bank-a,bank-b"
    assert "Role per namespace" in notes(VARIANTS["namespaced"])


def test_no_lease_access_without_leader_election():
    objects = render(VARIANTS["single-replica"])
    for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole"):
        assert not any(g[1] == "leases" for g in grants(role["rules"]))


def test_admin_bind_address_is_a_value():
    assert env(render())["ADMIN_ADDR"]["value"] == "0.0.0.0:8080"
    assert env(render({"admin": {"bindAddress": "127.0.0.1"}}))["ADMIN_ADDR"]["value"] == "127.0.0.1:8080"
    assert env(render({"admin": {"bindAddress": "::", "port": 9090}}))["ADMIN_ADDR"]["value"] == "[::]:9090"


def test_network_policy_is_optional_and_opens_only_the_admin_port_to_the_listed_peers():
    assert of_kind(render(), "NetworkPolicy") == []
    closed = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert closed["spec"]["policyTypes"] == ["Ingress"]
    assert closed["spec"]["ingress"] == []
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    objects = render({"networkPolicy": {"enabled": True, "metricsFrom": [peer]}})
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [{"from": [peer], "ports": [{"port": "admin", "protocol": "TCP"}]}]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_rbac_can_be_left_to_the_platform():
    objects = render({"rbac": {"create": False}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert of_kind(objects, kind) == []


# ---------------------------------------------------------------------------------------------------
# monitoring


def test_monitoring_is_off_by_default():
    objects = render()
    assert of_kind(objects, "ServiceMonitor") == []
    assert of_kind(objects, "PrometheusRule") == []


def test_service_monitor_scrapes_the_metrics_port():
    objects = render(VARIANTS["monitoring"])
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    svc = one(objects, "Service")
    for key, value in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][key] == value
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def alerts(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rule = one(render(values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_prometheus_rule_alerts_with_default_thresholds():
    found = alerts(VARIANTS["monitoring"])
    assert set(found) == {
        "EntraCredentialExpiringSoon",
        "EntraCredentialRotationFailing",
        "EntraCredentialRotationOverdue",
        "EntraBankHandoverUnconfirmed",
        "EntraOperatorDown",
    }
    expiry = found["EntraCredentialExpiringSoon"]
    assert re.sub(r"\s+", " ", expiry["expr"]).strip() == (
        "(entra_operator_credential_expiry_timestamp_seconds - time()) < 14 * 86400"
    )
    assert expiry["labels"]["severity"] == "critical"
    assert expiry["for"] == "15m"
    assert "increase(entra_operator_credential_rotation_failures_total[" in found[
        "EntraCredentialRotationFailing"
    ]["expr"]
    assert re.sub(r"\s+", " ", found["EntraCredentialRotationOverdue"]["expr"]).strip() == (
        "(time() - entra_operator_credential_next_rotation_timestamp_seconds) > 3600"
    )
    handover = found["EntraBankHandoverUnconfirmed"]
    assert re.sub(r"\s+", " ", handover["expr"]).strip() == (
        "(entra_operator_handover_previous_revoke_timestamp_seconds - time()) < 24 * 3600"
        " and on (namespace, name, bank_id) entra_operator_handover_confirmed == 0"
    )
    assert handover["labels"]["severity"] == "warning"
    assert "{{ $labels.bank_id }}" in handover["annotations"]["summary"]
    down = found["EntraOperatorDown"]["expr"].strip()
    assert down == f'absent(up{{job="{RELEASE}", namespace="{NAMESPACE}"}} == 1)'
    # Prometheus templates in annotations reach Prometheus untouched by Helm.
    assert "{{ $labels.namespace }}/{{ $labels.name }}" in expiry["annotations"]["summary"]
    assert "{{ $value | humanizeDuration }}" in expiry["annotations"]["description"]
    for rule in found.values():
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert "<no value>" not in json.dumps(rule)


def test_prometheus_rule_thresholds_and_labels_follow_values():
    found = alerts(
        {
            "prometheusRule": {
                "enabled": True,
                "credentialExpiryDays": 7,
                "rotationOverdueSeconds": 600,
                "handoverUnconfirmedHours": 48,
                "for": "5m",
                "alertLabels": {"team": "identity", "severity": "page"},
                "operatorDown": {"enabled": False},
            }
        }
    )
    assert "EntraOperatorDown" not in found
    assert "< 7 * 86400" in found["EntraCredentialExpiringSoon"]["expr"]
    assert "> 600" in found["EntraCredentialRotationOverdue"]["expr"]
    assert "< 48 * 3600" in found["EntraBankHandoverUnconfirmed"]["expr"]
    for rule in found.values():
        assert rule["for"] == "5m"
        assert rule["labels"] == {"team": "identity", "severity": "page"}


# ---------------------------------------------------------------------------------------------------
# Grafana dashboard

DASHBOARD_FILE = CHART_DIR / "dashboards" / "entra-operator.json"


def dashboard_configmaps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]


def test_dashboard_is_off_by_default():
    assert dashboard_configmaps(render()) == []


def test_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard_json():
    (cm,) = dashboard_configmaps(render(VARIANTS["dashboard"]))
    meta = cm["metadata"]
    assert meta["name"] == f"{RELEASE}-dashboard"
    assert meta["namespace"] == NAMESPACE
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in meta
    (key,) = cm["data"]
    assert key.endswith(".json")
    dashboard = json.loads(cm["data"][key])
    assert dashboard == json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "entra-operator"
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in [
        "Credentials by time to expiry",
        "Rotations",
        "Rotation failures",
        "Reconcile errors by reason",
        "Graph requests by status",
        "Graph 429 Too Many Requests",
        "Consent by tenant",
    ]:
        assert needed in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("{") == expr.count("}"), expr
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace"}


def test_dashboard_label_namespace_and_annotations_follow_values():
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "sidecarLabel": "grafana.io/dashboard",
            "sidecarLabelValue": "entra",
            "namespace": "monitoring",
            "labels": {"team": "identity"},
            "annotations": {"grafana_folder": "Identity"},
        }
    }
    (cm,) = dashboard_configmaps(render(values))
    meta = cm["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana.io/dashboard"] == "entra"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["team"] == "identity"
    assert meta["annotations"] == {"grafana_folder": "Identity"}
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []



RBAC_FIXTURE = ROOT / "tests" / "fixtures" / "chart" / "rbac.yaml"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def test_the_e2e_suites_rbac_is_what_the_chart_renders():
    """The Rust end-to-end suite runs the operator as the chart's ServiceAccount with the RBAC in
    tests/fixtures/chart/rbac.yaml; that file must be exactly what Helm renders with default values.
    Regenerate with: ENTRA_UPDATE_FIXTURES=1 bash conformance/helm/run.sh"""
    rendered = [o for o in render() if o["kind"] in RBAC_KINDS]
    text = (
        "# The RBAC the chart renders with default values (release entra-operator in entra-system).\n"
        "# Generated: ENTRA_UPDATE_FIXTURES=1 bash conformance/helm/run.sh (a test checks it).\n"
        + "".join("---\n" + yaml.safe_dump(o, sort_keys=True) for o in rendered)
    )
    if __import__("os").environ.get("ENTRA_UPDATE_FIXTURES") == "1":
        RBAC_FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        RBAC_FIXTURE.write_text(text)
    fixture = [d for d in yaml.safe_load_all(RBAC_FIXTURE.read_text()) if d]
    assert fixture == rendered, (
        "tests/fixtures/chart/rbac.yaml differs from the chart's rendered RBAC; regenerate it with "
        "ENTRA_UPDATE_FIXTURES=1 bash conformance/helm/run.sh"
    )
