"""The Python kubernetes client against the kube emulator: list, watch, and a stale update."""

import os
import threading
import time
import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api_client():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    return client.ApiClient()


@pytest.fixture
def namespace(api_client):
    core = client.CoreV1Api(api_client)
    name = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_lists_namespaces_and_custom_resources(api_client, namespace):
    core = client.CoreV1Api(api_client)
    names = [n.metadata.name for n in core.list_namespace().items]
    assert "default" in names and namespace in names
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a"), data={"k": "v"}))
    cms = core.list_namespaced_config_map(namespace)
    assert [c.metadata.name for c in cms.items] == ["a"]
    assert int(cms.metadata.resource_version) > 0
    crds = client.ApiextensionsV1Api(api_client).list_custom_resource_definition()
    assert any(c.spec.group == "entra.bookme.io" for c in crds.items)
    custom = client.CustomObjectsApi(api_client)
    listed = custom.list_namespaced_custom_object("entra.bookme.io", "v1alpha1", namespace, "bankclients")
    assert listed["items"] == []


def test_watch_sees_added_modified_deleted_in_order(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    events = []
    w = watch.Watch()

    def run():
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name, int(ev["object"].metadata.resource_version)))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"n": "1"}))
    core.patch_namespaced_config_map("w", namespace, {"data": {"n": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    t.join(timeout=15)
    assert not t.is_alive()
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(e[1] == "w" for e in events)
    rvs = [e[2] for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_stale_update_gets_409(api_client, namespace):
    core = client.CoreV1Api(api_client)
    first = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"n": "1"}))
    fresh = core.read_namespaced_config_map("c", namespace)
    fresh.data = {"n": "2"}
    core.replace_namespaced_config_map("c", namespace, fresh)
    first.data = {"n": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", namespace, first)
    assert err.value.status == 409
    assert "the object has been modified" in err.value.body


def test_invalid_custom_resource_gets_422(api_client, namespace):
    custom = client.CustomObjectsApi(api_client)
    body = {"apiVersion": "entra.bookme.io/v1alpha1", "kind": "TenantMapping", "metadata": {"name": "t"},
            "spec": {"tenantId": "not-a-guid", "bankIds": ["a"]}}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object("entra.bookme.io", "v1alpha1", namespace, "tenantmappings", body)
    assert err.value.status == 422
    assert "spec.tenantId" in err.value.body
