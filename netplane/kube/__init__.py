"""Shared access to the Kubernetes API: config and requests (client), a list+watch
cache (reflector) and, for tests, an in-process fake API server (fake_apiserver)."""
from netplane.kube.client import (ENDPOINTSLICES, NODES, SERVICES, ApiError, KubeConfigError, Resource,
                                  api_client)
from netplane.kube.reflector import Reflector

__all__ = ["ENDPOINTSLICES", "NODES", "SERVICES", "ApiError", "KubeConfigError", "Resource", "Reflector",
           "api_client"]
