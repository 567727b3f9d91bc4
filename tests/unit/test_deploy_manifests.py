"""deploy/ against the code: every manifest is a well-formed object of the
Kubernetes schema, every command line is one netplane's own parser takes,
the ConfigMap's KubeProxyConfiguration loads with netplane's own loader,
every ServiceAccount a DaemonSet runs as exists and is bound, and the
Containerfile builds the wheel and installs the packages the modes need."""
import json
import re
import shlex
from pathlib import Path

import kubernetes.client
import pytest
import yaml

from netplane import cli
from netplane.proxy import config, modes

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZATION = "kustomization.yaml"


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != KUSTOMIZATION)


def objects() -> list[dict]:
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def of_kind(kind: str) -> list[dict]:
    return [o for o in objects() if o["kind"] == kind]


def pod_specs() -> list[tuple[str, dict]]:
    return [(ds["metadata"]["name"], ds["spec"]["template"]["spec"]) for ds in of_kind("DaemonSet")]


def containers() -> list[tuple[str, dict, dict]]:
    """(DaemonSet/container, container, pod spec) for every container, init containers too."""
    return [(f"{name}/{c['name']}", c, spec) for name, spec in pod_specs()
            for c in spec.get("initContainers", []) + spec["containers"]]


def test_deploy_holds_the_manifests_and_kustomize_lists_each_once():
    names = {p.name for p in manifest_files()}
    assert {"rbac.yaml", "proxy-configmap.yaml", "proxy-daemonset.yaml", "agent-daemonset.yaml"} <= names
    listed = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())["resources"]
    assert sorted(listed) == sorted(names), "kustomization.yaml must list every manifest in deploy/, once"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_document_is_a_named_object(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), f"{path.name}: {doc!r:.80}"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: a {doc['kind']} without metadata.name"


def test_every_object_fits_the_kubernetes_schema():
    """Read into the client's models and written back: a misspelt field
    (`hostNetwrk`) has no attribute there and is dropped, so it shows as a
    difference; a missing required field is an error."""
    api = kubernetes.client.ApiClient()
    for obj in objects():
        model = api.deserialize(json.dumps(obj), "V1" + obj["kind"], "application/json")
        assert api.sanitize_for_serialization(model) == obj, f"{obj['kind']} {obj['metadata']['name']}"


def test_the_schema_check_sees_a_misspelt_field():
    api = kubernetes.client.ApiClient()
    daemonset = json.loads(json.dumps(of_kind("DaemonSet")[0]))
    daemonset["spec"]["template"]["spec"]["hostNetwrk"] = True
    model = api.deserialize(json.dumps(daemonset), "V1DaemonSet", "application/json")
    assert api.sanitize_for_serialization(model) != daemonset


def argv_of(container: dict) -> list[str]:
    """The command line as the kubelet runs it: command + args, $(VAR) expanded from env."""
    env = {e["name"]: f"<{e['name']}>" for e in container.get("env", [])}
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), word)
            for word in container.get("command", []) + container.get("args", [])]


def parse(argv: list[str]):
    assert argv[0] == "netplane", f"runs {argv[0]!r}, not netplane"
    try:
        return cli._parser().parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"netplane refuses {shlex.join(argv)}") from exc


@pytest.mark.parametrize("where, container, spec", containers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_line_is_one_netplane_accepts(where, container, spec):
    argv = argv_of(container)
    assert not any("$(" in word for word in argv), f"{where}: a $(VAR) without an env entry"
    args = parse(argv)
    assert getattr(args, "func", None), f"{where}: {shlex.join(argv)} names no command"


def test_a_flag_netplane_does_not_know_is_caught():
    with pytest.raises(AssertionError, match="refuses"):
        parse(["netplane", "proxy", "--in-cluster", "--hostname-overide=n1"])


def command_of(daemonset: str, container: str = "") -> list[str]:
    return next(argv_of(c) for where, c, _ in containers() if where.startswith(f"{daemonset}/{container}"))


def test_the_daemons_run_in_cluster_as_their_node():
    assert command_of("netplane-proxy")[1] == "proxy" and command_of("netplane-agent", "agent")[1] == "agent"
    proxy, agent = parse(command_of("netplane-proxy")), parse(command_of("netplane-agent", "agent"))
    assert proxy.in_cluster and proxy.node_name == "<NODE_NAME>"
    assert agent.in_cluster and agent.node_name == "<NODE_NAME>"
    for _, spec in pod_specs():
        assert spec["hostNetwork"] and spec["priorityClassName"] == "system-node-critical"
        assert {"operator": "Exists"} in spec["tolerations"]
        [node_name] = [e for c in spec["containers"] for e in c.get("env", []) if e["name"] == "NODE_NAME"]
        assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_the_init_container_installs_the_native_plugin_and_conflist_on_the_host():
    [install] = [(c, spec) for where, c, spec in containers() if where.startswith("netplane-agent/install")]
    container, spec = install
    assert argv_of(container)[1:3] == ["cni", "install"]
    args = parse(argv_of(container))
    assert args.client == "native" and args.standalone is False
    host_path = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounted = {m["mountPath"]: host_path.get(m["name"]) for m in container["volumeMounts"]}
    assert mounted[args.bin_dir] == "/opt/cni/bin" and mounted[args.conf_dir] == "/etc/cni/net.d"


def proxy_config_text() -> str:
    """The file `--config` names, found through the container's mounts in the ConfigMap."""
    [(_, container, spec)] = [c for c in containers() if c[0].startswith("netplane-proxy/")]
    path = Path(parse(argv_of(container)).config)
    [mount] = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    [configmap] = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    assert path.name in configmap["data"], f"the ConfigMap has no key {path.name}"
    return configmap["data"][path.name]


def test_the_proxy_config_is_a_kube_proxy_configuration_netplane_loads():
    doc = yaml.safe_load(proxy_config_text())
    assert doc["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1" and doc["kind"] == "KubeProxyConfiguration"
    cfg = config.from_dict(doc, "deploy/proxy-configmap.yaml")
    checked = config.check(cfg, modes.names())
    assert cfg.mode in modes.names() and checked.cluster_cidrs
    assert checked.healthz[1] == 10256
    # the probes ask the port the config serves on
    [(_, proxy, _)] = [c for c in containers() if c[0].startswith("netplane-proxy/")]
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/livez", "port": checked.healthz[1]}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": checked.healthz[1]}


def test_the_proxy_mounts_what_kube_proxy_mounts():
    [(_, proxy, spec)] = [c for c in containers() if c[0].startswith("netplane-proxy/")]
    host_path = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {host_path[m["name"]]: m for m in proxy["volumeMounts"] if m["name"] in host_path}
    assert mounts["/lib/modules"].get("readOnly") and mounts["/run/xtables.lock"]["mountPath"] == "/run/xtables.lock"


def test_the_agent_mounts_its_state_on_the_host():
    [(_, agent, spec)] = [c for c in containers() if c[0] == "netplane-agent/agent"]
    args = parse(argv_of(agent))
    host_path = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounted = {m["mountPath"]: host_path[m["name"]] for m in agent["volumeMounts"] if m["name"] in host_path}
    # the state and status files, and the IPAM store, live on the host, so a restart keeps them
    for path in (args.state_file, args.status_file, "/var/lib/cni/netplane/x"):
        [mount] = [m for m in mounted if path.startswith(m.rstrip("/") + "/")]
        assert mounted[mount] == mount, f"{path} is not on the host's {mount}"


def test_every_service_account_a_daemonset_runs_as_exists_and_is_bound():
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in of_kind("ServiceAccount")}
    roles = {r["metadata"]["name"] for r in of_kind("ClusterRole")}
    bound = {(s["namespace"], s["name"]): b["roleRef"]["name"] for b in of_kind("ClusterRoleBinding")
             for s in b["subjects"] if s["kind"] == "ServiceAccount"}
    for ds in of_kind("DaemonSet"):
        account = (ds["metadata"]["namespace"], ds["spec"]["template"]["spec"]["serviceAccountName"])
        assert account in accounts, f"{ds['metadata']['name']}: no ServiceAccount {account}"
        assert bound.get(account) in roles, f"{ds['metadata']['name']}: {account} is bound to no ClusterRole"
    namespaces = {n["metadata"]["name"] for n in of_kind("Namespace")}
    assert {o["metadata"]["namespace"] for o in objects() if "namespace" in o["metadata"]} <= namespaces


def containerfile_stages() -> list[tuple[str, list[str]]]:
    """(FROM image, [instructions]) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            stages.append((line.split()[1], []))
        elif line and not line.startswith("#"):
            stages[-1][1].append(line)
    return stages


def test_the_containerfile_builds_the_wheel_on_debian_and_installs_it_with_the_tools():
    stages = containerfile_stages()
    assert len(stages) == 2 and all(image.startswith("debian:bookworm") for image, _ in stages)
    build, runtime = (" ".join(lines) for _, lines in stages)
    assert "pip wheel" in build and " ." in build.split("pip wheel", 1)[1]
    assert re.search(r"COPY --from=build /wheels", runtime) and "--no-index" in runtime
    installed = set(re.search(r"apt-get install (.*?)&&", runtime).group(1).split())
    ebpf = set(re.search(r'ARG EBPF_PACKAGES="([^"]*)"', runtime).group(1).split())
    needed = {"python3", "iproute2", "iptables", "nftables", "conntrack", "kmod", "python3-nftables"}
    assert needed <= installed and "$EBPF_PACKAGES" in installed and "python3-bpfcc" in ebpf
    # what setup.py compiles needs a compiler, libc's static archive (the CNI client) and libcrypto's headers
    assert {"gcc", "libc6-dev", "libssl-dev", "python3-dev"} <= set(build.split())


def test_the_daemonsets_run_the_image_the_containerfile_makes():
    images = {c["image"] for _, c, _ in containers()}
    kustomized = {i["name"] for i in yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())["images"]}
    assert {image.split(":")[0] for image in images} == kustomized


def test_the_agents_probes_ask_the_port_the_agent_serves_health_on():
    from netplane.agent.ports import DEFAULT_HEALTHZ_ADDRESS

    port = config.bind_address(DEFAULT_HEALTHZ_ADDRESS, "agent healthz")[1]
    [(_, agent, _)] = [c for c in containers() if c[0].startswith("netplane-agent/") and c[1]["name"] == "agent"]
    assert "--healthz-bind-address" not in " ".join(agent["command"])     # the default, then
    assert agent["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
