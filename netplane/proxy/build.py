"""Builders for v1 Service and discovery.k8s.io/v1 EndpointSlice objects.

Plain dicts, exactly as the API server or a manifest file would give them.
The tests, the lab's demo Services and the benchmarks' generated clusters
all use these, so every path starts from real object shapes.
"""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service(name: str, cluster_ips, ports, namespace: str = "default", type: str = "ClusterIP", **spec) -> dict:
    """ports: [{"name", "port", "protocol", "targetPort", "nodePort"}, ...];
    spec: any other Service spec field (externalIPs, sessionAffinity, ...);
    `ingress=[ip, ...]` fills status.loadBalancer.ingress."""
    cluster_ips = [cluster_ips] if isinstance(cluster_ips, str) else list(cluster_ips)
    ingress = spec.pop("ingress", None)
    body = {"type": type, "clusterIP": cluster_ips[0] if cluster_ips else "None", "clusterIPs": cluster_ips or ["None"],
            "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips],
            "ports": [dict(p) for p in ports], **spec}
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}
    if ingress:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}}
    return obj


def endpoint(ip: str, node: str = "", ready: bool = True, serving: bool | None = None,
             terminating: bool = False, zone: str = "", hints=(), node_hints=()) -> dict:
    e = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready if serving is None else serving,
                                           "terminating": terminating}}
    if node:
        e["nodeName"] = node
    if zone:
        e["zone"] = zone
    if hints or node_hints:
        e["hints"] = {"forZones": [{"name": z} for z in hints]}
    if node_hints:
        e["hints"]["forNodes"] = [{"name": n} for n in node_hints]
    return e


def endpoint_slice(service_name: str, endpoints, ports, namespace: str = "default", name: str = "",
                   family: int = 4) -> dict:
    """endpoints: dicts from endpoint() or plain IP strings; ports: [{"name", "port", "protocol"}]."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": f"IPv{family}",
            "metadata": {"name": name or f"{service_name}-ipv{family}", "namespace": namespace,
                         "labels": {SERVICE_NAME_LABEL: service_name}},
            "endpoints": [endpoint(e) if isinstance(e, str) else e for e in endpoints],
            "ports": [dict(p) for p in ports]}
