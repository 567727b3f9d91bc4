"""Statistics over the raw samples (pure).

A run's samples are records {"subject", "where", "services", "round",
"metric", "values": [...]}: one record per (subject, size, round, metric).
A summary pools a (subject, where, size, metric)'s values over rounds for
p50 and p99, and takes the spread (error bars) from the per-round medians,
so it shows how much the rounds, i.e. the machine's drift, disagree."""
from typing import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    rank = (len(s) - 1) * q / 100
    lo = int(rank)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


def summarise(rounds: Sequence[Sequence[float]]) -> dict:
    """One summary from the values of each round: n, p50, p99, min, max,
    mean of all values pooled; spread = [lowest, highest] per-round median."""
    pooled = [v for r in rounds for v in r]
    if not pooled:
        raise ValueError("no values to summarise")
    medians = [percentile(r, 50) for r in rounds if r]
    return {"n": len(pooled), "rounds": len(medians), "p50": percentile(pooled, 50),
            "p99": percentile(pooled, 99), "min": min(pooled), "max": max(pooled),
            "mean": sum(pooled) / len(pooled), "spread": [min(medians), max(medians)]}


def row_key(record: dict) -> str:
    """A report row: the subject, with "@vm" when it ran in the virtual machine."""
    return record["subject"] + ("@vm" if record.get("where") == "vm" else "")


def summaries(samples: Iterable[dict]) -> dict:
    """{row: {services (str): {metric: summary}}} over every sample record."""
    grouped: dict = {}
    for rec in samples:
        per = grouped.setdefault(row_key(rec), {}).setdefault(str(rec["services"]), {})
        per.setdefault(rec["metric"], []).append(rec["values"])
    return {row: {size: {m: summarise(rs) for m, rs in metrics.items()} for size, metrics in sizes.items()}
            for row, sizes in grouped.items()}


def ratio(a: dict | None, b: dict | None) -> dict | None:
    """a over b, two summaries of one metric: of the p50s, with the widest
    spread the two allow (None when either is missing or b is zero)."""
    if not a or not b or not b["p50"] or not b["spread"][0] or not b["spread"][1]:
        return None
    return {"value": a["p50"] / b["p50"],
            "spread": [a["spread"][0] / b["spread"][1], a["spread"][1] / b["spread"][0]]}
