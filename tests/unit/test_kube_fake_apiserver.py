"""The fake API server speaks enough of the real protocol for the official client,
and netplane.kube.client reaches it (and reports bad kubeconfigs) as it should."""
import json
import socket

import kubernetes
import pytest

from netplane.kube import client
from netplane.kube.client import ENDPOINTSLICES, NODES, SERVICES, ApiError, KubeConfigError, Resource
from netplane.kube.fake_apiserver import FakeApiServer, merge_patch


def node(name, **spec):
    return {"metadata": {"name": name}, "spec": spec}


def slice_(namespace, name):
    return {"metadata": {"namespace": namespace, "name": name}, "addressType": "IPv4", "endpoints": []}


def watch_events(api, resource, rv, timeout=0.5, **extra):
    query = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": timeout, **extra}
    response = client.request(api, "GET", resource.path(), query.items())
    assert response.status == 200
    return [json.loads(line) for line in response.data.splitlines()]


def test_resource_paths_and_keys():
    assert NODES.path() == "/api/v1/nodes"
    assert NODES.path("n1") == "/api/v1/nodes/n1"
    assert ENDPOINTSLICES.path() == "/apis/discovery.k8s.io/v1/endpointslices"
    assert SERVICES.path("web", "prod") == "/api/v1/namespaces/prod/services/web"
    assert ENDPOINTSLICES.api_version == "discovery.k8s.io/v1" and NODES.api_version == "v1"
    assert SERVICES.key(slice_("prod", "web")) == "prod/web" and NODES.key(node("n1")) == "n1"


def test_official_client_lists_gets_and_patches(fake, api):
    fake.put(NODES, node("n1", podCIDRs=["10.244.1.0/24"]))
    core = kubernetes.client.CoreV1Api(api)
    listed = core.list_node()
    assert [n.metadata.name for n in listed.items] == ["n1"]
    assert listed.metadata.resource_version == "1"
    assert core.read_node("n1").spec.pod_cidrs == ["10.244.1.0/24"]
    # patch_node sends a strategic merge patch
    patched = core.patch_node("n1", {"metadata": {"annotations": {"netplane.io/mac": "0a:58:0a:00:00:01"}}})
    assert patched.metadata.resource_version == "2"
    assert fake.get(NODES, "n1")["metadata"]["annotations"] == {"netplane.io/mac": "0a:58:0a:00:00:01"}
    assert fake.get(NODES, "n1")["spec"] == {"podCIDRs": ["10.244.1.0/24"]}
    with pytest.raises(kubernetes.client.ApiException) as missing:
        core.read_node("nope")
    assert missing.value.status == 404


def test_official_watch_streams_events(fake, api):
    fake.put(NODES, node("n1"))
    fake.put(NODES, node("n2"))
    fake.delete(NODES, "n1")
    watch = kubernetes.watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in watch.stream(kubernetes.client.CoreV1Api(api).list_node, resource_version="1", timeout_seconds=1)]
    assert seen == [("ADDED", "n2"), ("DELETED", "n1")]


def test_list_shape_and_namespaces(fake, api):
    fake.put(ENDPOINTSLICES, slice_("a", "web-1"))
    fake.put(ENDPOINTSLICES, slice_("b", "web-1"))
    everything = client.list_collection(api, ENDPOINTSLICES)
    assert everything["kind"] == "EndpointSliceList" and everything["apiVersion"] == "discovery.k8s.io/v1"
    assert everything["metadata"]["resourceVersion"] == "2"
    assert sorted(i["metadata"]["namespace"] for i in everything["items"]) == ["a", "b"]
    only_b = client.list_collection(api, ENDPOINTSLICES, namespace="b")
    assert [i["metadata"]["namespace"] for i in only_b["items"]] == ["b"]
    assert client.get(api, ENDPOINTSLICES, "web-1", "a")["kind"] == "EndpointSlice"
    assert client.list_collection(api, SERVICES)["items"] == []


def test_put_keeps_identity_and_bumps_the_global_version(fake):
    first = fake.put(NODES, node("n1"))
    fake.put(SERVICES, {"metadata": {"namespace": "a", "name": "web"}})
    second = fake.put(NODES, node("n1", unschedulable=True))
    assert (first["metadata"]["resourceVersion"], second["metadata"]["resourceVersion"]) == ("1", "3")
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert fake.delete(NODES, "n1")["metadata"]["resourceVersion"] == "4"
    assert fake.get(NODES, "n1") is None
    with pytest.raises(KeyError):
        fake.delete(NODES, "n1")
    with pytest.raises(ValueError):
        fake.put(SERVICES, {"metadata": {"name": "no-namespace"}})


def test_merge_patch_through_the_client(fake, api):
    fake.put(NODES, node("n1", podCIDRs=["10.244.1.0/24"]))
    client.patch(api, NODES, "n1", {"metadata": {"annotations": {"a": "1", "b": "2"}}})
    result = client.patch(api, NODES, "n1", {"metadata": {"annotations": {"a": None}}, "spec": {"x": 1}})
    assert result["metadata"]["annotations"] == {"b": "2"}
    assert result["spec"] == {"podCIDRs": ["10.244.1.0/24"], "x": 1}
    assert result == fake.get(NODES, "n1")
    with pytest.raises(ApiError) as conflict:
        client.patch(api, NODES, "n1", {"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})
    assert conflict.value.status == 409
    with pytest.raises(ApiError) as missing:
        client.patch(api, NODES, "nope", {"metadata": {"labels": {"x": "y"}}})
    assert missing.value.status == 404 and 'nodes "nope" not found' in str(missing.value)
    json_patch = client.request(api, "PATCH", NODES.path("n1"), body=[{"op": "remove", "path": "/spec"}],
                                content_type="application/json-patch+json")
    assert json_patch.status == 415
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}


def test_watch_replays_history_then_ends_at_the_timeout(fake, api):
    fake.put(NODES, node("n1"))
    fake.put(NODES, node("n1", unschedulable=True))
    fake.delete(NODES, "n1")
    events = watch_events(api, NODES, "1")      # after rv 1: the last two writes
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == \
        [("MODIFIED", "2"), ("DELETED", "3")]


def test_watch_sends_bookmarks_with_the_current_version(fake, api):
    fake.put(NODES, node("n1"))
    fake.put(SERVICES, {"metadata": {"namespace": "a", "name": "web"}})
    events = watch_events(api, NODES, "1", timeout=0.7, allowWatchBookmarks="true")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2 and len(bookmarks) == len(events)
    assert bookmarks[-1]["object"]["metadata"]["resourceVersion"] == "2"
    assert not any(e["type"] == "BOOKMARK" for e in watch_events(api, NODES, "1", timeout=0.5))


def test_watch_from_a_compacted_version_gets_410(fake, api):
    fake.put(NODES, node("n1"))
    fake.put(NODES, node("n2"))
    fake.compact()
    fake.put(NODES, node("n3"))
    assert watch_events(api, NODES, "1") == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}}]
    assert [e["object"]["metadata"]["name"] for e in watch_events(api, NODES, "2")] == ["n3"]


def test_pause_answers_503_until_resumed(fake, api):
    fake.put(NODES, node("n1"))
    fake.pause()
    with pytest.raises(ApiError) as paused:
        client.get(api, NODES, "n1")
    assert paused.value.status == 503
    fake.resume()
    assert client.get(api, NODES, "n1")["metadata"]["name"] == "n1"
    assert [r[:2] for r in fake.requests] == [("GET", "/api/v1/nodes/n1")] * 2


def test_unknown_paths_and_selectors_are_refused(api):
    for path in ("/api/v1/widgets", "/api/v1/services/web", "/api/v1/namespaces/a/nodes", "/healthz"):
        assert client.request(api, "GET", path).status == 404, path
    # silently ignoring a selector would hand a test more than it asked for
    assert client.request(api, "GET", NODES.path(), [("labelSelector", "a=b")]).status == 400
    for selector in ("spec.unschedulable=true", "metadata.name!=n1", "metadata.name", "metadata.name=a,b"):
        assert client.request(api, "GET", NODES.path(), [("fieldSelector", selector)]).status == 400, selector


@pytest.mark.parametrize("selector", ["metadata.name=n2", "metadata.name==n2"])
def test_a_name_field_selector_narrows_lists_and_watches(fake, api, selector):
    for name in ("n1", "n2", "n3"):
        fake.put(NODES, node(name))
    listed = client.read_json(client.request(api, "GET", NODES.path(), [("fieldSelector", selector)]))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["n2"]
    assert listed["metadata"]["resourceVersion"] == "3"
    fake.put(NODES, node("n1", unschedulable=True))
    fake.put(NODES, node("n2", unschedulable=True))
    fake.delete(NODES, "n2")
    events = watch_events(api, NODES, "3", fieldSelector=selector)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "n2"), ("DELETED", "n2")]
    # from rv 0 the current state comes first, narrowed alike
    fake.put(NODES, node("n2"))
    assert [e["object"]["metadata"]["name"] for e in watch_events(api, NODES, "0", fieldSelector=selector)] == ["n2"]


def test_a_name_field_selector_keeps_to_the_namespace_of_the_path(fake, api):
    fake.put(SERVICES, {"metadata": {"namespace": "a", "name": "web"}})
    fake.put(SERVICES, {"metadata": {"namespace": "b", "name": "web"}})
    query = [("fieldSelector", "metadata.name=web")]
    assert len(client.list_collection(api, SERVICES)["items"]) == 2
    only_b = client.read_json(client.request(api, "GET", SERVICES.path(namespace="b"), query))
    assert [i["metadata"]["namespace"] for i in only_b["items"]] == ["b"]


def test_every_request_is_recorded_with_its_query_in_order(fake, api):
    fake.put(NODES, node("n1"))
    client.read_json(client.request(api, "GET", NODES.path(), [("fieldSelector", "metadata.name=n1")]))
    watch_events(api, SERVICES, "1")
    client.patch(api, NODES, "n1", {"metadata": {"labels": {"a": "b"}}})
    assert client.request(api, "GET", "/api/v1/widgets").status == 404
    assert [r.method for r in fake.requests] == ["GET", "GET", "PATCH", "GET"]
    assert fake.requests[0] == ("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn1")
    assert fake.requests[1].path == "/api/v1/services"
    assert fake.requests[1].query == {"watch": "true", "resourceVersion": "1", "timeoutSeconds": "0.5"}
    assert fake.requests[2:] == [("PATCH", "/api/v1/nodes/n1"), ("GET", "/api/v1/widgets")]


def test_requests_from_many_threads_are_all_recorded(fake, api):
    import threading

    def get_nodes():
        for _ in range(10):
            client.list_collection(api, NODES)
    threads = [threading.Thread(target=get_nodes) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.requests == [("GET", "/api/v1/nodes")] * 40


def test_serves_on_a_socket_from_the_caller():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    with FakeApiServer(sock=sock) as fake:
        assert fake.url == f"http://127.0.0.1:{port}"
        fake.put(NODES, node("n1"))
        api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=fake.url))
        assert [i["metadata"]["name"] for i in client.list_collection(api, NODES)["items"]] == ["n1"]


def test_custom_resources_are_served_once_put(fake, api):
    widgets = Resource("example.com", "v1alpha1", "widgets", True, "Widget")
    assert client.request(api, "GET", widgets.path()).status == 404
    fake.put(widgets, {"metadata": {"namespace": "a", "name": "w"}})
    assert client.list_collection(api, widgets)["kind"] == "WidgetList"


def test_missing_kubeconfig_is_one_clear_line(tmp_path):
    with pytest.raises(KubeConfigError, match=r"^kubeconfig .*/absent does not exist$"):
        client.api_client(str(tmp_path / "absent"))


@pytest.mark.parametrize("content, expected", [
    ("clusters: [oops\n", "cannot load kubeconfig"),
    ("- just\n- a list\n", "cannot load kubeconfig"),
    ("apiVersion: v1\nclusters: []\n", "current-context"),
    ("apiVersion: v1\ncurrent-context: gone\ncontexts: []\n", "gone"),
])
def test_malformed_kubeconfig_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    with pytest.raises(KubeConfigError) as error:
        client.api_client(str(path))
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_outside_a_cluster_in_cluster_config_fails_clearly(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="in-cluster config"):
        client.api_client(None)
