"""The run: every subject at every size, round by round, on one testbed.

Sizes go in order (a size's manifests are written once). Within a size,
each round runs every subject once, the order rotating by one subject per
round, so drift of the machine (heat, other load) hits every subject alike
and no subject always goes first. Each proxy subject starts from a bare
node: a fresh daemon (its full sync is the first step), `--cleanup` after.

A step that runs out of its cap is "did not finish in N s" at that size;
one that breaks is a failure with its one-line error. When the step is one
the rest depend on (steps.BLOCKING: full sync, first packet, programming
latency, churn) or the kernel does not hold the subject's mode
(evidence.py), the subject's remaining steps at that size are skipped, and
its later rounds at that size too.
"""
import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass

from netplane.bench.proxy import cluster, evidence, stats, steps
from netplane.bench.proxy.steps import Effort, Run, Unfinished
from netplane.bench.proxy.subjects import Subject
from netplane.bench.proxy.testbed import PODS, Testbed


@dataclass
class Plan:
    subjects: list[Subject]
    services: list[int]
    endpoints: int
    repeat: int
    cap: float
    effort: Effort


def rotated(items: list, by: int) -> list:
    by %= len(items) or 1
    return items[by:] + items[:by]


def total_steps(plan: Plan) -> int:
    return len(plan.services) * plan.repeat * sum(len(steps.steps_for(s)) for s in plan.subjects)


class Recorder:
    """The results' raw parts, filled as the run goes."""

    def __init__(self) -> None:
        self.samples, self.unfinished, self.failed, self.held = [], [], [], []
        self.blocked: set[tuple[str, int]] = set()

    def where(self, subject: Subject, services: int, round_: int) -> dict:
        return {"subject": subject.name, "where": subject.where, "services": services, "round": round_}

    def sample(self, run: Run, round_: int, metric: str, values: list[float]) -> None:
        self.samples.append({**self.where(run.subject, run.services, round_), "metric": metric,
                             "values": values, "checked": run.checked.get(metric, "")})

    def unfinish(self, run: Run, round_: int, step: str, cap: float, metrics: list[str]) -> None:
        self.unfinished.append({**self.where(run.subject, run.services, round_), "step": step, "cap_s": cap,
                                "metrics": metrics})

    def fail(self, run: Run, round_: int, step: str, error: BaseException, metrics: list[str]) -> None:
        text = " ".join(str(error).split())[:400] or type(error).__name__
        self.failed.append({**self.where(run.subject, run.services, round_), "step": step, "error": text,
                            "metrics": metrics})


def run_subject(bed: Testbed, plan: Plan, subject: Subject, services: int, round_: int,
                rec: Recorder, progress, last: bool = False) -> None:
    """A subject's steps at one size in one round; the proxy is stopped after, and its mode
    cleaned up unless this is the run's last subject (the lab's removal takes everything)."""
    run = Run(bed, subject, services, plan.endpoints, plan.effort, plan.cap)
    bed.check_backends()
    bed.forget_connections()
    todo = steps.steps_for(subject)
    try:
        for i, (name, step) in enumerate(todo):
            progress.step(f"{services:,} Services · round {round_}/{plan.repeat} · {subject.row} · {name}")
            rest = [m for later, _ in todo[i:] for m in steps.STEP_METRICS[later]]
            if not _one_step(run, round_, name, step, rec, rest) or (i == 0 and not _held(run, round_, rec, rest)):
                rec.blocked.add((subject.row, services))
                progress.advance(len(todo) - i)
                return
            progress.advance()
    finally:
        if subject.mode is not None:
            try:
                bed.stop_proxy(cleanup=not last)
            except Exception as err:            # noqa: BLE001 - reported; the next subject would see it
                rec.fail(run, round_, "cleanup", err, [])


def _held(run: Run, round_: int, rec: Recorder, rest: list[str]) -> bool:
    """After the first step: the kernel holds the subject's mode, and only it (evidence.py). Its
    samples are dropped when it does not: they did not measure the subject."""
    try:
        held = evidence.check(run.bed, run.subject, run.services, run.endpoints)
    except RuntimeError as err:
        rec.samples = [s for s in rec.samples if not _same(s, run, round_)]
        rec.fail(run, round_, "kernel check", err, rest)
        return False
    rec.held.append({**rec.where(run.subject, run.services, round_), "held": held})
    return True


def _same(sample: dict, run: Run, round_: int) -> bool:
    return (sample["subject"], sample["where"], sample["services"], sample["round"]) == (
        run.subject.name, run.subject.where, run.services, round_)


def _one_step(run: Run, round_: int, name: str, step, rec: Recorder, rest: list[str]) -> bool:
    """Run a step and record it; False when the subject cannot go on at this size (its record then
    names every metric left without a number, `rest`)."""
    metrics = rest if name in steps.BLOCKING else list(steps.STEP_METRICS[name])
    try:
        for metric, values in step(run).items():
            rec.sample(run, round_, metric, values)
        return True
    except Unfinished:
        rec.unfinish(run, round_, name, run.cap, metrics)
    except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as err:
        rec.fail(run, round_, name, err, metrics)
    return name not in steps.BLOCKING


def run(plan: Plan, progress, bed: Testbed | None = None) -> Recorder:
    rec = Recorder()
    progress.start(total_steps(plan))
    bed = bed or Testbed()
    progress.step("building the lab: 2 nodes, 4 pods, an external client")
    bed.up()
    try:
        for services in plan.services:
            progress.step(f"{services:,} Services: writing the manifests")
            cluster.write(bed.manifests(services), services, plan.endpoints, bed.pod_ip(PODS[0]))
            for round_ in range(1, plan.repeat + 1):
                order = rotated(plan.subjects, round_ - 1)
                for subject in order:
                    if (subject.row, services) in rec.blocked:
                        progress.advance(len(steps.steps_for(subject)))
                        continue
                    last = services == plan.services[-1] and round_ == plan.repeat and subject == order[-1]
                    run_subject(bed, plan, subject, services, round_, rec, progress, last)
    finally:
        progress.step("removing the lab")
        with signals_held():
            bed.down()
    return rec


@contextlib.contextmanager
def signals_held():
    """A second Ctrl-C or SIGTERM must not cut the lab's removal short; they wait until it is done."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.getsignal(s) for s in held}
    for s in held:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def results(rec: Recorder, subjects: list[Subject], params: dict, machine: dict, took: float) -> dict:
    return {"benchmark": "netplane bench proxy", "format": 1, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "took_s": took, "machine": machine, "params": params,
            "subjects": [s.describe() for s in subjects], "samples": rec.samples,
            "unfinished": rec.unfinished, "failed": rec.failed, "held": rec.held,
            "summary": stats.summaries(rec.samples)}
