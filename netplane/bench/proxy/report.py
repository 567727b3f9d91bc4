"""The report of `netplane bench proxy` (pure, from the results dict alone):
the ratios to the references, a rich summary for the terminal, a markdown
report, one plot per metric, and all of it written to a directory.

Rows are stats.row_key()s: a subject, "@vm" appended when it ran in the
virtual machine. Every row is compared with the floor of its own machine
("floor" or "floor@vm", data path metrics only: the floor runs no proxy),
and host rows with "kube-proxy-layout" too; a VM row never meets a host row,
as the VM runs another kernel, emulated."""
import json
from pathlib import Path

from netplane.bench.proxy import stats
from netplane.bench.proxy.metrics import BY_KEY, METRICS, Metric

FLOOR = "floor"
KUBE_PROXY = "kube-proxy-layout"
REFERENCES = (KUBE_PROXY, FLOOR)
# The ratio tags of a cell: ×1.08f is over the floor, ×0.95k over kube-proxy.
TAGS = (("floor", "f"), ("kube-proxy", "k"))
CAPTION = ("p50 · p99 pooled over rounds. ×N f: p50 over the floor's (no proxy, same machine); "
           "×N k: over kube-proxy-layout's (host rows only). Higher is better only for "
           + ", ".join(m.unit for m in METRICS if m.higher_is_better) + ".")
VM_NOTE = "Rows marked @vm ran in the emulated VM (another kernel): compare them with floor@vm only."


# -- the rows, the sizes and the cells, as the tables and plots share them ------------------------

def summary(results: dict) -> dict:
    """The results' summary (made from the samples when a caller left it out)."""
    s = results.get("summary")
    return s if s is not None else stats.summaries(results.get("samples", []))


def is_vm(row: str) -> bool:
    return row.endswith("@vm")


def subject_of(row: str) -> str:
    return row.removesuffix("@vm")


def floor_of(row: str) -> str:
    return FLOOR + ("@vm" if is_vm(row) else "")


def _summary_at(results: dict, row: str, size: str, key: str) -> dict | None:
    return summary(results).get(row, {}).get(size, {}).get(key)


def _trouble(results: dict) -> list[tuple[str, dict]]:
    """The unfinished and failed records, each with its kind."""
    return ([("unfinished", r) for r in results.get("unfinished") or []]
            + [("failed", r) for r in results.get("failed") or []])


def rows(results: dict) -> list[str]:
    """Every row: the host's first, then the VM's; in each, the modes, then
    kube-proxy's layout, then the floor, each group in the order of the
    subjects, rows no subject names after them."""
    kinds = {stats.row_key({"subject": s["name"], "where": s.get("where")}): s.get("kind")
             for s in results.get("subjects") or []}
    seen = list(kinds) + list(summary(results)) + [stats.row_key(r) for _, r in _trouble(results)]
    order = list(dict.fromkeys(seen))

    def kind(row: str) -> str:
        return kinds.get(row) or ("reference" if subject_of(row) in REFERENCES else "mode")
    return sorted(order, key=lambda r: (is_vm(r), kind(r) != "mode", subject_of(r) == FLOOR, order.index(r)))


def sizes(results: dict) -> list[str]:
    """Every number of Services anything was measured (or tried) at, ascending."""
    found = {size for per in summary(results).values() for size in per}
    found |= {str(r["services"]) for _, r in _trouble(results)}
    return sorted(found, key=int)


def row_metrics(results: dict, row: str) -> set[str]:
    """The metrics a row has: those it has anywhere, or, when it has none
    (it never got that far), every metric a row of its kind can have."""
    have = {k for per in summary(results).get(row, {}).values() for k in per}
    if have:
        return have
    return {m.key for m in METRICS if m.data_path or subject_of(row) != FLOOR}


def status(results: dict, row: str, size: str, key: str) -> str | None:
    """What a cell without a summary says. A record naming its metrics (the
    runner's: the step's, or all those a blocking step left unmeasured) or
    one metric marks those cells; one naming only its step marks every
    metric the row has left blank at that size."""
    if _summary_at(results, row, size, key) is not None:
        return None
    has = key in row_metrics(results, row)
    for kind, rec in _trouble(results):
        named = rec["metrics"] if "metrics" in rec else [rec["metric"]] if rec.get("metric") else None
        if stats.row_key(rec) == row and str(rec["services"]) == size and (
                key in named if named is not None else has):
            return "failed" if kind == "failed" else unfinished_text(results, rec)
    return None


def shown_metrics(results: dict) -> list[Metric]:
    """The tables' columns: the plotted metrics (all of them when nothing got summarised)."""
    return plotted_metrics(results) or list(METRICS)


def unfinished_text(results: dict, rec: dict) -> str:
    cap = rec.get("cap_s", results.get("params", {}).get("cap_s"))
    return f"did not finish in {cap:g} s" if cap is not None else "did not finish"


def num(v: float) -> str:
    """Three or so significant digits, thousands separated."""
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:#.3g}"


def cell(results: dict, rat: dict, row: str, size: str, m: Metric) -> list[str]:
    """A cell's lines: "812 · p99 1,030" (the unit is in the heading, to keep
    eight columns within a terminal), then "×1.08f ×0.95k"; or its status; or nothing."""
    s = _summary_at(results, row, size, m.key)
    if s is None:
        st = status(results, row, size, m.key)
        return [st] if st else []
    lines = [num(s["p50"]) + (f" · p99 {num(s['p99'])}" if m.tail else "")]
    r = rat.get(row, {}).get(size, {}).get(m.key, {})
    tags = [f"×{r[name]['value']:.2f}{tag}" for name, tag in TAGS if name in r]
    return lines + ([" ".join(tags)] if tags else [])


def _row_at(results: dict, row: str, size: str) -> bool:
    return size in summary(results).get(row, {}) or any(
        stats.row_key(r) == row and str(r["services"]) == size for _, r in _trouble(results))


def trouble_lines(results: dict, size: str | None = None) -> list[str]:
    """One line per unfinished or failed step (of one size, when given)."""
    out = []
    for kind, r in _trouble(results):
        if size is None or str(r["services"]) == size:
            what = unfinished_text(results, r) if kind == "unfinished" else f"failed: {r.get('error', '')}"
            out.append(f"{stats.row_key(r)}, {int(r['services']):,} Services, round {r.get('round', '?')}, "
                       f"{r.get('step', r.get('metric', '?'))}: {what}")
    return out


# -- the ratios --------------------------------------------------------------------------------------

def ratios(results: dict) -> dict:
    """{row: {size: {metric: {"floor": ratio, "kube-proxy": ratio}}}} (stats.ratio's),
    only those that exist: over the floor of the row's machine for data path
    metrics, over kube-proxy-layout for host rows; no reference over itself,
    and the floor over nothing (it is what the others are measured against)."""
    summ, out = summary(results), {}
    for row, per in summ.items():
        if subject_of(row) == FLOOR:
            continue
        for size, metrics in per.items():
            for key, s in metrics.items():
                r = {}
                if key in BY_KEY and BY_KEY[key].data_path:
                    r["floor"] = stats.ratio(s, summ.get(floor_of(row), {}).get(size, {}).get(key))
                if not is_vm(row) and row != KUBE_PROXY:
                    r["kube-proxy"] = stats.ratio(s, summ.get(KUBE_PROXY, {}).get(size, {}).get(key))
                r = {k: v for k, v in r.items() if v is not None}
                if r:
                    out.setdefault(row, {}).setdefault(size, {})[key] = r
    return out


# -- the terminal ------------------------------------------------------------------------------------

def terminal(results: dict, console) -> None:
    """One rich table per number of Services, a column per row (mode or
    reference) and a row per metric, so that it fits a terminal; below
    each, its unfinished and failed steps."""
    from rich.table import Table

    rat, metrics = ratios(results), shown_metrics(results)
    for size in sizes(results):
        here = [row for row in rows(results) if _row_at(results, row, size)]
        vm = any(is_vm(row) for row in here)
        t = Table(title=f"{int(size):,} Services", caption=TERMINAL_CAPTION + (f"\n{VM_NOTE}" if vm else ""),
                  show_lines=True, caption_justify="left")
        t.add_column("", style="bold")
        for row in here:
            t.add_column(row.replace("-layout", "\nlayout"), justify="right",
                         style="dim" if subject_of(row) == FLOOR else None)
        for m in metrics:
            cells = [_terminal_cell(cell(results, rat, row, size, m)) for row in here]
            t.add_row(m.short + (" ↑" if m.higher_is_better else ""), *cells)
        console.print(t)
        for line in trouble_lines(results, size):
            console.print(f"  {line}", markup=False, highlight=False)


TERMINAL_CAPTION = ("p50, then p99 where the tail matters, pooled over rounds. ×N f: over the floor "
                    "(no proxy, same machine); ×N k: over kube-proxy-layout (host only). ↑: higher is better.")


def _terminal_cell(lines: list[str]) -> str:
    """A cell's lines one under another (the p99 and each ratio on its own line)."""
    if lines == ["failed"]:
        return "[red]failed[/]"
    if lines and lines[0].startswith("did not finish"):
        return f"[yellow]{lines[0]}[/]"
    out = []
    for line in lines:
        out += line.split(" · ") if "p99" in line else line.split(" ")
    return "\n".join(out) or "–"


# -- markdown ----------------------------------------------------------------------------------------

HOW_TO_READ = (
    "Each subject was measured in rounds, interleaved (every subject once per round, "
    "then the next round), so the machine's drift falls on all of them alike. p50 and p99 pool the "
    "values of every round; the error bars of the plots (and `spread` in results.json) go from the "
    "lowest to the highest per-round median, how much the rounds disagree. ×N f is a row's p50 over "
    "the floor's (no proxy: straight to the pod, on the same machine), the price of the proxy on the "
    "data path; ×N k is over kube-proxy-layout's, host rows only. Rows marked @vm ran in an emulated "
    "virtual machine with another kernel: compare them with floor@vm, never with host rows.")


def md_table(results: dict, size: str, here: list[str]) -> list[str]:
    """One size as the terminal shows it: a column per row (mode or reference), a line per metric."""
    rat = ratios(results)
    lines = ["| | " + " | ".join(here) + " |", "|---|" + "---:|" * len(here)]
    for m in shown_metrics(results):
        cells = ["<br>".join(cell(results, rat, row, size, m)) or "–" for row in here]
        lines.append(f"| {m.short}{' ↑' if m.higher_is_better else ''} | " + " | ".join(cells) + " |")
    return lines


def _md_header(results: dict) -> list[str]:
    p, took = results.get("params", {}), results.get("took_s")
    lines = ["# netplane bench proxy: the proxy modes compared", "",
             f"{results.get('when', '?')}" + (f", took {took:.0f} s" if took is not None else "") + ".", ""]
    lines += ["- machine: " + ", ".join(f"{k} {v}" for k, v in (results.get("machine") or {}).items())]
    lines += ["- params: " + ", ".join(f"{k} {json.dumps(v)}" for k, v in p.items())]
    lines += [f"- {stats.row_key({'subject': s['name'], 'where': s.get('where')})}: {s.get('description', '')}"
              for s in results.get("subjects") or []]
    return lines + [""]


def markdown(results: dict) -> str:
    """The report: header, one table per size, the unfinished and failed steps, the plots, how to read."""
    lines = _md_header(results)
    for size in sizes(results):
        here = [row for row in rows(results) if _row_at(results, row, size)]
        lines += [f"## {int(size):,} Services", "", *md_table(results, size, here), ""]
        if any(is_vm(row) for row in here):
            lines += [VM_NOTE, ""]
    trouble = trouble_lines(results)
    lines += ["## Unfinished and failed", "", *([f"- {t}" for t in trouble] or ["None."]), ""]
    lines += ["## What carried the traffic", "", *held_lines(results), ""]
    lines += ["## Plots", ""] + [f"![{m.title}]({m.key}.png)\n" for m in plotted_metrics(results)]
    return "\n".join(lines + ["## How to read", "", CAPTION, "", HOW_TO_READ]) + "\n"


def held_lines(results: dict) -> list[str]:
    """Per row and size, what the node's kernel held after the first step (evidence.py), and what
    each measurement checked of its answers (first round)."""
    out, seen = [], set()
    for rec in results.get("held") or []:
        key = (stats.row_key(rec), rec["services"])
        if key not in seen:
            seen.add(key)
            out.append(f"- {key[0]}, {int(key[1]):,} Services: {rec['held']}")
    checked = {}
    for rec in results.get("samples") or []:
        checked.setdefault((stats.row_key(rec), rec["metric"]), rec.get("checked", ""))
    out += [f"- {row}, {BY_KEY[m].title if m in BY_KEY else m}: {text}" for (row, m), text in checked.items() if text]
    return out or ["Nothing recorded."]


# -- the plots ---------------------------------------------------------------------------------------

def plotted_metrics(results: dict) -> list[Metric]:
    """The metrics that get a plot: those with a summary anywhere."""
    have = {k for per in summary(results).values() for sizes_ in per.values() for k in sizes_}
    return [m for m in METRICS if m.key in have]


def _draw_row(ax, results: dict, row: str, m: Metric, color: str, stacked: list[int]) -> None:
    """One row's p50s with their spread, and an x at the top for each size it has no value at."""
    summ = summary(results)
    points = sorted((int(size), s[m.key]) for size, s in summ.get(row, {}).items() if m.key in s)
    missing = [(int(size), st) for size in sizes(results) if (st := status(results, row, size, m.key))]
    # VM rows: dashed and hollow, as they often have a single size (no line to dash)
    style = {"color": color, "linestyle": "--" if is_vm(row) else "-",
             "marker": "s" if subject_of(row) in REFERENCES else "o",
             "markerfacecolor": "none" if is_vm(row) else color}
    label = row + "".join(f" (x: {st} at {n:,})" for n, st in missing)
    if points:
        ys = [s["p50"] for _, s in points]
        err = [[max(0.0, y - s["spread"][0]) for y, (_, s) in zip(ys, points)],
               [max(0.0, s["spread"][1] - y) for y, (_, s) in zip(ys, points)]]
        ax.errorbar([n for n, _ in points], ys, yerr=err, capsize=3, label=label, **style)
        label = None
    # A step that never ended has no value: its x sits on the top edge (in axes
    # coordinates, so it never stretches the y axis), stacked down when several share a size.
    for n, _ in missing:
        ax.plot([n], [1.0 - 0.05 * stacked.count(n)], "x", color=color, markersize=10, mew=2,
                clip_on=False, transform=ax.get_xaxis_transform(), label=label)
        label = None
        stacked.append(n)


def _plot_metric(results: dict, m: Metric, path: Path) -> None:
    """One metric over the number of Services: this machine's rows on the left; the VM's, when
    there are any, in a panel of their own on the right (its scale is another machine's)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = rows(results)
    colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(subject_of(r) for r in all_rows))}
    colors[FLOOR] = "k"
    shown = [r for r in all_rows if any(_summary_at(results, r, n, m.key) or status(results, r, n, m.key)
                                        for n in sizes(results))]
    panels = [(title, group) for title, group in (
        ("this machine", [r for r in shown if not is_vm(r)]),
        ("in the VM (emulated, another kernel)", [r for r in shown if is_vm(r)])) if group]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 + 3.5 * (len(panels) - 1), 5), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1][:len(panels)]})
    for ax, (title, group) in zip(axes[0], panels):
        _draw_panel(ax, results, m, group, colors, title if len(panels) > 1 else None)
    axes[0][0].set_ylabel(f"{m.unit} (p50; bars: lowest..highest round median)", fontsize=9)
    fig.suptitle(m.title + (" (higher is better)" if m.higher_is_better else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw_panel(ax, results: dict, m: Metric, group: list[str], colors: dict, title: str | None) -> None:
    stacked: list[int] = []
    for row in group:
        _draw_row(ax, results, row, m, colors[subject_of(row)], stacked)
    summ = summary(results)
    xs = sorted({int(size) for r in group for size in summ.get(r, {}) if m.key in summ[r][size]} | set(stacked))
    if len(xs) > 1 and xs[-1] >= 10 * xs[0]:
        ax.set_xscale("log")
    ax.set_xticks(xs, [f"{n:,}" for n in xs])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("Services")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


def plot(results: dict, out: Path) -> list[Path]:
    """<out>/<metric>.png for every metric with a summary; returns their paths."""
    paths = []
    for m in plotted_metrics(results):
        path = Path(out) / f"{m.key}.png"
        _plot_metric(results, m, path)
        paths.append(path)
    return paths


def write_json(results: dict, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out / "results.json"


def write(results: dict, out: Path) -> list[Path]:
    """<out>/results.json, report.md and the plots; returns their paths."""
    out = Path(out)
    write_json(results, out)
    (out / "report.md").write_text(markdown(results), encoding="utf-8")
    return [out / "results.json", out / "report.md", *plot(results, out)]
