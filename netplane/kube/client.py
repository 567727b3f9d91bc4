"""Talking to the Kubernetes API: config loading, resource paths, raw JSON requests.

Theory of operation: the official `kubernetes` library does everything that
is easy to get subtly wrong (kubeconfig and in-cluster config, bearer token
refresh, client certificates, TLS, proxies, connection pooling). We use only
its transport: `ApiClient.param_serialize` builds the URL and applies auth,
and `ApiClient.call_api` sends the request and hands back the undecoded
urllib3 response. Objects stay plain JSON dicts instead of generated models:
callers read the few fields they need, unknown fields cost nothing, and a
watch can be streamed line by line.
"""
import json
import os
from dataclasses import dataclass

import kubernetes
import kubernetes.client
import kubernetes.config
import urllib3
import yaml

from netplane.errors import OperatorError

# (connect, read) seconds for ordinary requests; watches set their own read timeout
REQUEST_TIMEOUT = (10.0, 60.0)
MERGE_PATCH = "application/merge-patch+json"


class KubeConfigError(OperatorError):
    """The API cannot be reached as configured; the message is one line for the operator."""


class ApiError(Exception):
    """The API answered with an HTTP error; `status` is its code (404, 410, 503, ...)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        """The collection (all namespaces unless one is given), or one object in it."""
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name else path

    def key(self, obj: dict) -> str:
        """The cache key: namespace/name for namespaced objects, name otherwise."""
        meta = obj.get("metadata", {})
        return f"{meta.get('namespace', '')}/{meta['name']}" if self.namespaced else meta["name"]


NODES = Resource("", "v1", "nodes", False, "Node")
SERVICES = Resource("", "v1", "services", True, "Service")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", True, "EndpointSlice")


def api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An ApiClient from this kubeconfig file, or from the pod's service account if None."""
    if not hasattr(kubernetes.client.ApiClient, "param_serialize"):
        # older releases were generated from the python-legacy template, whose call_api differs
        raise KubeConfigError(f"kubernetes client {kubernetes.__version__} is too old: 37 or newer is needed")
    config = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            _check_exists(kubeconfig)
            kubernetes.config.load_kube_config(kubeconfig, client_configuration=config, persist_config=False)
        else:
            kubernetes.config.load_incluster_config(client_configuration=config)
    except KubeConfigError:
        raise
    # the loader lets YAML errors and wrong shapes (a list where a map belongs) escape as they are
    except (kubernetes.config.ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError, KeyError,
            ValueError) as e:
        source = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster config (not running in a pod?)"
        raise KubeConfigError(f"cannot load {source}: {one_line(e)}") from None
    return kubernetes.client.ApiClient(config)


def _check_exists(kubeconfig: str) -> None:
    # the loader reports a missing file as "No configuration found", which sends people looking
    # inside a file that is not there; KUBECONFIG-style lists are accepted as the loader does
    for path in kubeconfig.split(os.pathsep):
        if not os.path.isfile(path):
            raise KubeConfigError(f"kubeconfig {path} does not exist")


def one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def request(api, method: str, path: str, query=(), body=None, content_type: str | None = None,
            timeout=REQUEST_TIMEOUT) -> urllib3.HTTPResponse:
    """Send one request; the undecoded response, whatever its status, for the caller to read."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    # the JSON body is encoded by the REST layer from the Content-Type; BearerToken names the
    # kubeconfig/in-cluster token, and looking it up runs the token refresh hook
    args = api.param_serialize(method, path, query_params=list(query), header_params=headers, body=body,
                               auth_settings=["BearerToken"])
    return api.call_api(*args, _request_timeout=timeout).response


def read_json(response: urllib3.HTTPResponse) -> dict:
    """The body of a finished response as JSON, or ApiError for an HTTP error."""
    try:
        data = response.data
    finally:
        response.release_conn()
    if not 200 <= response.status < 300:
        raise error_from(response.status, data)
    return json.loads(data)


def error_from(status: int, data: bytes) -> ApiError:
    try:
        message = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        message = data[:200].decode(errors="replace")
    return ApiError(status, message or "no message")


def list_collection(api, resource: Resource, namespace: str | None = None) -> dict:
    """The whole List object: `items` and `metadata.resourceVersion` to watch from."""
    return read_json(request(api, "GET", resource.path(namespace=namespace)))


def get(api, resource: Resource, name: str, namespace: str | None = None) -> dict:
    return read_json(request(api, "GET", resource.path(name, namespace)))


def patch(api, resource: Resource, name: str, patch: dict, namespace: str | None = None) -> dict:
    """RFC 7386 merge patch: set the keys given, delete those given as None."""
    return read_json(request(api, "PATCH", resource.path(name, namespace), body=patch, content_type=MERGE_PATCH))
