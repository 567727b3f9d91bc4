"""Shared access to the Kubernetes API: config and requests (client), a list+watch
cache (reflector), checked field access (fields), manifest files (manifests) and,
for tests, an in-process fake API server (fake_apiserver).

Import the submodule you need: the package itself imports nothing, because the
API client library takes a quarter of a second to load, which one-shot commands
that only read manifests (`netplane compile`, the CNI plugin) should not pay.
"""
