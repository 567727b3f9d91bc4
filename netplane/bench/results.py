"""A benchmark's results on disk: the raw report as JSON, its markdown and its plot."""
import json
from pathlib import Path
from typing import Callable


def write(out: Path, name: str, report: dict, markdown: Callable[[dict], str],
          plot: Callable[[dict, Path], None]) -> dict[str, Path]:
    """<out>/<name>.{json,md,png}; returns the paths by extension."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths
