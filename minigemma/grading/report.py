"""The grade report: a table of points per task for each notebook, a total, and the same as JSON.

    exercises/solutions/04_rope.ipynb                      9 / 9
      rope-angles                2 / 2   passed.
      rope-apply                 4 / 4   passed.
    ...
    total  9 notebooks  86 / 86 points (100%)  in 41.2 s
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path


def points_text(points: float) -> str:
    return f"{points:g}"


def format_report(reports, seconds: float) -> str:
    lines = []
    width = max([len(t.task) for r in reports for t in r.tasks] + [12])
    for report in reports:
        score = f"{points_text(report.points)} / {points_text(report.max_points)}"
        lines.append(f"{report.path}    {score}")
        if report.error:
            lines.append(f"  ! {report.error}")
        for task in report.tasks:
            mark = f"{points_text(task.points)} / {points_text(task.max_points)}"
            lines.append(f"  {task.task:<{width}}  {mark:>9}   {task.message}")
        lines.append("")
    got, out_of = sum(r.points for r in reports), sum(r.max_points for r in reports)
    share = f" ({100 * got / out_of:.0f}%)" if out_of else ""
    noun = "notebook" if len(reports) == 1 else "notebooks"
    unreadable = sum(r.unreadable for r in reports)
    warning = f"  ({unreadable} unreadable, their points unknown and not counted)" if unreadable else ""
    lines.append(f"total  {len(reports)} {noun}  {points_text(got)} / {points_text(out_of)} points{share}"
                 f"  in {seconds:.1f} s{warning}")
    return "\n".join(lines)


def report_dict(reports, seconds: float) -> dict:
    return {"points": sum(r.points for r in reports), "max_points": sum(r.max_points for r in reports),
            "seconds": round(seconds, 2), "notebooks": [r.to_dict() for r in reports]}


def write_json(reports, seconds: float, path) -> None:
    """Write the report to a temporary file beside `path`, then rename it: never a half-written report."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".part",
                                     delete=False) as f:
        partial = Path(f.name)
    try:
        partial.write_text(json.dumps(report_dict(reports, seconds), indent=2) + "\n")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
