"""Two runs of `netplane bench proxy` against each other (`netplane bench
compare A B`): every (row, Services, metric) both summarised, B's p50
over A's, and a verdict for B: better or worse, or the same when the two
runs' spreads (lowest..highest per-round median) overlap, so a difference
the rounds of one run already show is not called a change. What only one
run has is listed too, so a row that vanished is seen."""
import json
from pathlib import Path

from netplane.bench.proxy import report
from netplane.bench.proxy.metrics import BY_KEY, METRICS

BENCHMARK = "netplane bench proxy"
FORMATS = (1,)
NOISE = 0.05
CAPTION = ("B/A: B's p50 over A's; [lowest..highest per-round median] beside each p50. "
           "The verdict is B's: \"same\" when the two spreads overlap or the p50s differ by under 5 %.")


class CompareError(ValueError):
    """A run that cannot be compared; its message is one line naming the path."""


def load(directory) -> dict:
    """<directory>/results.json, checked to be a result this code reads."""
    d = Path(directory)
    if not d.is_dir():
        raise CompareError(f"{d}: no such directory" if not d.exists() else f"{d}: not a directory")
    path = d / "results.json"
    if not path.is_file():
        raise CompareError(f"{path}: no such file (not a `{BENCHMARK}` output directory?)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(f"{path}: unreadable: {e}") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(results, dict) or results.get("benchmark") != BENCHMARK:
        raise CompareError(f"{path}: not a `{BENCHMARK}` result")
    if results.get("format") not in FORMATS:
        raise CompareError(f"{path}: format {results.get('format')!r}, this netplane reads format "
                           + ", ".join(map(str, FORMATS)))
    if not isinstance(results.get("summary"), dict):
        raise CompareError(f"{path}: no summary")
    return results


def _order(key: str) -> tuple:
    keys = [m.key for m in METRICS]
    return (keys.index(key), "") if key in keys else (len(keys), key)


def _cells(summary: dict) -> dict:
    """{(row, services, metric): summary}, services an int."""
    return {(row, int(size), key): s for row, per in summary.items()
            for size, metrics in per.items() for key, s in metrics.items()}


def verdict(key: str, a: dict, b: dict) -> str:
    """B's verdict against A on one metric: "same" within the spreads, or within NOISE (one round
    has no spread, and this machine's runs differ by a few per cent with nothing changed)."""
    (a_lo, a_hi), (b_lo, b_hi) = a["spread"], b["spread"]
    if not a["p50"] or (a_lo <= b_hi and b_lo <= a_hi) or abs(b["p50"] / a["p50"] - 1) < NOISE:
        return "same"
    m = BY_KEY.get(key)
    higher = m.higher_is_better if m else False
    return "better" if (b["p50"] > a["p50"]) == higher else "worse"


def compare(a: dict, b: dict) -> list[dict]:
    """One dict per (row, services, metric) in either run, rows in A's order
    (then B's new ones), sizes ascending, metrics in METRICS order."""
    ca, cb = _cells(report.summary(a)), _cells(report.summary(b))
    row_order = list(dict.fromkeys([k[0] for k in ca] + [k[0] for k in cb]))
    out = []
    for key in sorted(ca.keys() | cb.keys(), key=lambda k: (row_order.index(k[0]), k[1], _order(k[2]))):
        sa, sb = ca.get(key), cb.get(key)
        row, services, metric = key
        out.append({"row": row, "services": services, "metric": metric,
                    "a": sa["p50"] if sa else None, "b": sb["p50"] if sb else None,
                    "ratio": sb["p50"] / sa["p50"] if sa and sb and sa["p50"] else None,
                    "a_spread": sa["spread"] if sa else None, "b_spread": sb["spread"] if sb else None,
                    "verdict": verdict(metric, sa, sb) if sa and sb else "only in A" if sa else "only in B"})
    return out


def _value(p50: float | None, spread: list | None, sep: str = " ") -> str:
    """A p50, and its spread when the rounds had one (a single round has none)."""
    if p50 is None:
        return "–"
    if spread[0] == spread[1] and sep == "\n":
        return report.num(p50)
    return f"{report.num(p50)}{sep}[{report.num(spread[0])}..{report.num(spread[1])}]"


def _line(r: dict, short: bool = False) -> list[str]:
    """A row's cells: row, Services, metric (unit), A, B, B/A, verdict; `short` (a terminal): the
    metric's short label, each spread under its p50."""
    m = BY_KEY.get(r["metric"])
    name = (m.short if short else f"{m.title} ({m.unit})") if m else r["metric"]
    sep = "\n" if short else " "
    return [r["row"], f"{r['services']:,}", name, _value(r["a"], r["a_spread"], sep),
            _value(r["b"], r["b_spread"], sep), f"×{r['ratio']:.2f}" if r["ratio"] is not None else "–",
            r["verdict"]]


HEADS = ["row", "Services", "metric", "A p50", "B p50", "B/A", "verdict"]
STYLES = {"better": "green", "worse": "red", "same": "dim"}


def terminal(rows: list[dict], console, a_name: str, b_name: str) -> None:
    """A table per number of Services (so that it fits a terminal), then the caption."""
    from rich import box
    from rich.table import Table

    console.print(f"A = {a_name}\nB = {b_name}", markup=False, highlight=False)
    for services in sorted({r["services"] for r in rows}):
        t = Table(title=f"{services:,} Services", box=box.SIMPLE_HEAD, title_justify="left")
        for h in HEADS:
            if h != "Services":
                t.add_column(h, justify="right" if h in ("A p50", "B p50", "B/A") else "left",
                             no_wrap=h == "metric")
        for r in (r for r in rows if r["services"] == services):
            row, _, *cells, v = _line(r, short=True)
            t.add_row(row, *cells, f"[{STYLES.get(v, 'yellow')}]{v}[/]")
        console.print(t)
    console.print(CAPTION, markup=False, highlight=False)


def markdown(rows: list[dict], a_name: str, b_name: str) -> str:
    lines = [f"# {BENCHMARK}: B against A", "", f"- A: {a_name}", f"- B: {b_name}", "",
             "| " + " | ".join(HEADS) + " |", "|---|---:|---|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(_line(r)) + " |" for r in rows]
    return "\n".join(lines + ["", CAPTION]) + "\n"


def main(a_dir: str, b_dir: str, out: str | None, console=None) -> int:
    """Loads both runs, prints the comparison and writes <out>/compare.md when asked."""
    a, b = load(a_dir), load(b_dir)
    if console is None:
        from rich.console import Console
        console = Console()
    try:
        rows = compare(a, b)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise CompareError(f"{a_dir} or {b_dir}: a malformed summary ({type(err).__name__}: {err})") from None
    terminal(rows, console, a_dir, b_dir)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "compare.md"
        path.write_text(markdown(rows, a_dir, b_dir), encoding="utf-8")
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0
