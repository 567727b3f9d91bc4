"""The CNI contract under faults: plugins and the agent killed at random.

16 runtime threads ADD and DEL pods on one node while some ADD plugin
processes are SIGKILLed a few milliseconds in and a chaos thread SIGKILLs
the agent every second or two and starts it again. The runtime does what
a real one must: a failed or killed ADD is followed by DEL, retried until
it succeeds. Every outcome is recorded, and at the end:
- a plugin that was not killed and failed said so in the spec's error
  JSON, with code 11 (the agent was down or died mid-request), nothing else;
- live pods hold distinct addresses, each its attachment's reservation,
  and no pod the runtime DELeted still has an eth0;
- GC with the live pods as the valid ones leaves exactly their reservations;
- DEL of every live pod leaves no reservation, no veth and no pod eth0.

The plugin is installed with standalone=False where install() has it, so
a plugin that finds no agent must answer 11 rather than do the work itself.
Reproducible up to thread scheduling: NETPLANE_FAULT_SEED picks the seed
(printed with -s), which drives every choice each worker makes.
"""
import inspect
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass

from netplane import sandbox
from netplane.cni import install, runtime
from netplane.cni.errors import TRY_AGAIN_LATER

SEED = int(os.environ.get("NETPLANE_FAULT_SEED") or 20240611)
PODS = 28
SUBNET = "10.88.0.0/26"       # 61 pod addresses for 28 pods and the killed ADDs in flight: reused often
WORKERS = 16
OPERATIONS = 300              # ADDs and DELs chosen by the workers (re-ADDs and DEL retries come on top)
BURST = 0.5                   # of operations: start the next one at once; the others after THINK seconds
THINK = (0.5, 5.0)            # the native client takes ~2 ms: pauses stretch the run over many agent kills
KILL_RATE = 0.3               # of ADDs (not re-ADDs): SIGKILL the plugin after 0-20 ms
DEL_RATE = 0.4                # of operations, when a pod is live: DEL one
RE_ADD_RATE = 0.5             # of those DELs: ADD again at once into the same namespace and ifname
AGENT_UP = (1.0, 2.0)         # seconds between agent kills
AGENT_DOWN = (0.1, 0.5)       # seconds the agent stays dead
DEL_DEADLINE = 60.0           # a runtime retries DEL this long before the test calls it stuck
PLUGIN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    verb: str
    pod: str
    cid: str
    exit_code: int            # -9: killed by us
    stdout: bytes
    stderr: bytes
    agent_up: bool            # as the chaos thread saw it when the plugin started
    re_add: bool = False

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL

    def show(self) -> str:
        tail = self.stderr.decode(errors="replace").strip()[-400:]
        return (f"{self.verb} {self.cid} in {self.pod}{' (re-ADD)' if self.re_add else ''}: exit {self.exit_code}, "
                f"agent {'up' if self.agent_up else 'down'}, stdout {self.stdout.decode(errors='replace')!r}"
                + (f", stderr {tail!r}" if tail else ""))


def install_client(bin_dir: str) -> tuple[str, bool]:
    """The plugin as `netplane cni install` makes it; (path, falls back to
    the standalone path when no agent answers). Once install() can turn the
    fallback off, it is off: with the agent down the plugin must say 11."""
    if "standalone" in inspect.signature(install.install).parameters:
        return install.install(bin_dir, standalone=False)[0], False
    return install.install(bin_dir)[0], True


def spec_error_problem(out: Outcome) -> str | None:
    """Why this failure breaks the contract, or None: a non-zero exit must
    come with the spec's error JSON, code 11, naming the agent."""
    try:
        err = json.loads(out.stdout)
    except (ValueError, UnicodeDecodeError):
        return "stdout is not an error JSON"
    if not isinstance(err, dict) or not {"cniVersion", "code", "msg"} <= err.keys():
        return "not the spec's error object"
    if err["code"] != TRY_AGAIN_LATER:
        return f"code {err['code']}, not {TRY_AGAIN_LATER}"
    if "agent" not in f"{err['msg']} {err.get('details', '')}".lower():
        return "code 11 without naming the agent"
    return None


class Run:
    """The runtime side: pods, who is live, every outcome, every violation."""

    def __init__(self, node, plugin: str, seed: int) -> None:
        self.node, self.plugin, self.seed = node, plugin, seed
        self.conf_file = node.tmp / "netconf.json"
        self.conf_file.write_text(json.dumps(node.conf))
        self.lock = threading.Lock()
        self.free = sorted(node.pods)
        self.live: dict[str, tuple[str, dict]] = {}      # pod -> (container ID, ADD result)
        self.outcomes: list[Outcome] = []
        self.violations: list[str] = []
        self.started = 0
        self.cids = 0
        self.re_adds_ok = 0
        self.procs: set[subprocess.Popen] = set()
        self.agent_kills = 0
        self.agent_up = threading.Event()
        self.agent_up.set()
        self.stop = threading.Event()

    # -- one plugin run --------------------------------------------------
    def plugin_run(self, verb: str, pod: str, cid: str, kill_after: float | None = None,
                   re_add: bool = False) -> Outcome:
        env = runtime.env_for(verb, container_id=cid, netns=self.node.pods[pod], ifname="eth0")
        up = self.agent_up.is_set()
        with open(self.conf_file, "rb") as conf:      # the config on stdin, all there from the start
            proc = subprocess.Popen(sandbox.enter(self.node.netns, [self.plugin]), env=env, stdin=conf,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self.lock:
            self.procs.add(proc)
        try:
            if kill_after is not None:
                time.sleep(kill_after)
                proc.kill()                     # a no-op if it has exited already
            stdout, stderr = proc.communicate(timeout=PLUGIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr += b"\n[test] timed out"
        finally:
            with self.lock:
                self.procs.discard(proc)
        out = Outcome(verb, pod, cid, proc.returncode, stdout, stderr, up, re_add)
        with self.lock:
            self.outcomes.append(out)
        if out.exit_code not in (0, -signal.SIGKILL) and (problem := spec_error_problem(out)):
            self.violate(f"{problem}: {out.show()}\n    {self.evidence(pod, out)}")
        return out

    def evidence(self, pod: str, out: Outcome) -> str:
        """For the report: the pod's links, its last plugin runs, and whose
        eth0 the pod has, if any (the agent log names the node end's owner)."""
        node = self.node
        links = node.sb.run(node.pods[pod], ["ip", "-br", "link"], check=False).stdout.decode()
        with self.lock:
            history = [o for o in self.outcomes if o.pod == pod and o is not out][-4:]
        text = (f"links in {pod}: {' | '.join(' '.join(line.split()) for line in links.splitlines())}; "
                "before: " + "; ".join(f"{o.verb} {o.cid} exit {o.exit_code}" for o in history))
        eth0 = node.ip(node.pods[pod], "addr", "show", "dev", "eth0") if "eth0" in links else []
        if eth0 and "link_index" in eth0[0]:
            peer = [l["ifname"] for l in node.node_links() if l["ifindex"] == eth0[0]["link_index"]]
            addresses = [a["local"] for a in eth0[0].get("addr_info", []) if a.get("scope") == "global"]
            text += f"\n    its eth0 has {addresses}, node end {peer}; agent log on it:\n      " + "\n      ".join(
                agent_log_about(node.tmp / "agent.log", *peer))
        return text

    def violate(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def new_cid(self, pod: str) -> str:
        with self.lock:
            self.cids += 1
            return f"{pod}-{self.cids:04d}"

    # -- what a runtime does ----------------------------------------------
    def add(self, rng: random.Random, pod: str, re_add: bool = False) -> None:
        cid = self.new_cid(pod)
        # 0-20 ms, mostly the first few: the native client is done in about 2 ms.
        kill_after = 0.02 * rng.random() ** 4 if not re_add and rng.random() < KILL_RATE else None
        out = self.plugin_run("ADD", pod, cid, kill_after, re_add)
        if out.exit_code == 0:
            try:
                result = json.loads(out.stdout)
                assert [ip["address"].endswith("/26") for ip in result["ips"]] == [True]
            except (ValueError, KeyError, TypeError, AssertionError):
                self.violate(f"ADD succeeded without a result: {out.show()}")
                result = {}
            with self.lock:
                self.live[pod] = (cid, result)
                self.re_adds_ok += re_add
            return
        # Failed or killed: the runtime must DEL before the sandbox goes.
        if self.delete(pod, cid):
            with self.lock:
                self.free.append(pod)

    def delete(self, pod: str, cid: str) -> bool:
        deadline = time.monotonic() + DEL_DEADLINE
        while time.monotonic() < deadline:
            if self.plugin_run("DEL", pod, cid).exit_code == 0:
                return True
            if self.stop.wait(0.05):    # the agent is down: a runtime backs off and retries
                return False            # the test is being torn down
        self.violate(f"DEL {cid} in {pod} did not succeed within {DEL_DEADLINE:.0f} s")
        return False                    # the pod stays out of the pools

    def worker(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        try:
            while not self.stop.is_set():
                with self.lock:
                    if self.started >= OPERATIONS:
                        return
                    pod = action = None
                    if self.live and (not self.free or rng.random() < DEL_RATE):
                        pod, action = rng.choice(sorted(self.live)), "DEL"
                    elif self.free:
                        pod, action = self.free.pop(rng.randrange(len(self.free))), "ADD"
                    if pod is not None:
                        self.started += 1
                        held = self.live.pop(pod, None)
                if pod is None:
                    time.sleep(0.01)    # every pod is busy with another worker
                    continue
                if rng.random() > BURST and self.stop.wait(rng.uniform(*THINK)):
                    return
                if action == "ADD":
                    self.add(rng, pod)
                elif self.delete(pod, held[0]):
                    if rng.random() < RE_ADD_RATE:
                        self.add(rng, pod, re_add=True)     # same netns, same ifname, right after DEL
                    else:
                        with self.lock:
                            self.free.append(pod)
        except BaseException as exc:
            self.violate(f"worker {index} crashed: {exc!r}")
            raise

    def wait_for_a_plugin_run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.procs and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.001)

    def chaos(self, rng: random.Random) -> None:
        try:
            while not self.stop.wait(rng.uniform(*AGENT_UP)):
                self.wait_for_a_plugin_run(1.0)     # so the kill often lands mid-request
                self.agent_up.clear()
                self.node.agent.kill()
                self.node.agent.wait()
                self.agent_kills += 1
                time.sleep(rng.uniform(*AGENT_DOWN))
                self.node.start_agent()
                self.agent_up.set()
        except BaseException as exc:
            self.violate(f"chaos thread failed after {self.agent_kills} agent kill(s): {exc!r}")
            self.stop.set()

    def summary(self) -> str:
        counts = Counter()
        for o in self.outcomes:
            kind = "ok" if o.exit_code == 0 else "killed" if o.killed else _code(o)
            counts[f"{o.verb}{'(re)' if o.re_add else ''} {kind}{'' if o.agent_up else ' [agent down]'}"] += 1
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _code(out: Outcome) -> str:
    try:
        return f"code {json.loads(out.stdout)['code']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"exit {out.exit_code}"


def agent_log_errors(path) -> str:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return ""
    bad = [line for line in lines if "level=error" in line or "unexpectedly" in line]
    return "\n".join(line[:600] for line in bad[-5:])


def agent_log_about(path, host_ifname: str | None = None) -> list[str]:
    """The agent's ADD/DEL lines for the attachment whose node end is host_ifname."""
    if not host_ifname:
        return []
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return []
    added = [line for line in lines if f"via {host_ifname}" in line]
    keys = {line.split('msg="ADD ', 1)[1].split(":", 1)[0] for line in added if 'msg="ADD ' in line}
    return [line[:200] for line in lines if any(f" {key}:" in line for key in keys)]


def has_eth0(node, pod: str) -> bool:
    return node.sb.run(node.pods[pod], ["ip", "link", "show", "dev", "eth0"], check=False).returncode == 0


def test_add_and_del_under_plugin_and_agent_kills(node, tmp_path):
    plugin, fallback = install_client(str(tmp_path / "bin"))
    node.plugin = plugin                        # node.cni() (GC, final DELs) runs this one too
    node.conf["subnet"] = SUBNET
    print(f"\nfault seed {SEED} (NETPLANE_FAULT_SEED); plugin {plugin}; "
          f"{'standalone fallback while the agent is down' if fallback else 'code 11 while the agent is down'}")
    for i in range(PODS):
        node.pod(f"p{i:02d}")
    node.start_agent()
    log = tmp_path / "agent.log"

    run = Run(node, plugin, SEED)
    started = time.monotonic()
    chaos = threading.Thread(target=run.chaos, args=(random.Random(SEED),), name="chaos", daemon=True)
    workers = [threading.Thread(target=run.worker, args=(i,), name=f"runtime-{i}", daemon=True)
               for i in range(WORKERS)]
    try:
        chaos.start()
        for w in workers:
            w.start()
        deadline = time.monotonic() + 300
        for w in workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [w.name for w in workers if w.is_alive()]
    finally:
        run.stop.set()
        chaos.join(timeout=60)
        for w in workers:
            w.join(timeout=5)
        with run.lock:
            leftovers = list(run.procs)
        for proc in leftovers:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    print(f"{len(run.outcomes)} plugin runs in {elapsed:.1f} s, {run.agent_kills} agent kills, "
          f"{run.re_adds_ok} re-ADDs right after DEL succeeded, {len(run.live)} pods live\n{run.summary()}")
    assert not stuck, f"runtime threads stuck: {stuck}"
    assert not chaos.is_alive(), "the chaos thread did not stop"
    assert not run.violations, (f"the CNI contract broke {len(run.violations)} time(s):\n"
                                + "\n".join(run.violations[:10])
                                + f"\n(agent log {log})\n" + agent_log_errors(log))
    assert run.agent_kills >= 3, "too few agent kills to mean anything"
    assert any(o.killed and o.verb == "ADD" for o in run.outcomes), "no ADD was killed"
    assert run.re_adds_ok > 0, "no re-ADD right after DEL succeeded"
    if not fallback:
        assert any(_code(o) == "code 11" for o in run.outcomes), "no plugin ever found the agent down"

    if node.agent.poll() is not None:           # the chaos thread may have left it dead
        node.start_agent()

    # 1. live pods: distinct addresses, each its attachment's reservation
    reserved = {(a.container_id, a.ifname): sorted(ips) for a, ips in node.reserved().items()}
    seen: dict[str, str] = {}
    for pod, (cid, result) in sorted(run.live.items()):
        have = sorted(a.split("/")[0] for a in node.pod_addresses(pod))
        assert have == reserved.get((cid, "eth0")), f"{pod} ({cid}) has {have}, reserved {reserved.get((cid, 'eth0'))}"
        assert have == sorted(ip["address"].split("/")[0] for ip in result["ips"]), f"{pod}: ADD said {result['ips']}"
        for ip in have:
            assert ip not in seen, f"{ip} is on both {seen[ip]} and {pod}"
            seen[ip] = pod
    # ... and no pod the runtime DELeted keeps an eth0 (with an address IPAM may hand out again)
    dead = [p for p in node.pods if p not in run.live]
    try:
        sandbox.wait_for(lambda: not [p for p in dead if has_eth0(node, p)], timeout=10,
                         what="DELeted pods to lose eth0")
    except TimeoutError:
        raise AssertionError(f"pods DELeted by the runtime still have eth0: "
                             f"{[p for p in dead if has_eth0(node, p)]}\n{agent_log_errors(log)}") from None

    # 2. GC with the live pods as the valid attachments leaves exactly theirs
    valid = [{"containerID": cid, "ifname": "eth0"} for cid, _ in run.live.values()]
    gc = node.cni("GC", cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert gc.ok, gc.stdout.decode() + gc.stderr.decode()
    assert sorted(a.container_id for a in node.reserved()) == sorted(cid for cid, _ in run.live.values())
    live_hosts = sorted(result["interfaces"][1]["name"] for _, result in run.live.values())
    sandbox.wait_for(lambda: sorted(node.veths()) == live_hosts, timeout=10, what="only live pods' veths")

    # 3. DEL of every live pod leaves nothing behind
    for pod, (cid, _) in sorted(run.live.items()):
        out = node.cni("DEL", pod, cid=cid)
        assert out.ok, out.stdout.decode() + out.stderr.decode()
    assert node.reserved() == {}
    node.wait_for_no_veths()
    assert [p for p in node.pods if has_eth0(node, p)] == []
    assert node.agent.poll() is None, f"the agent died on its own; see {log}"
