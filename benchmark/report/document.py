"""Reporting: ``report.md`` and a self-contained ``report.html`` built from a run folder alone.

The sections come from :mod:`benchmark.report.sections`, the two renderings from :mod:`benchmark.report.render`.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.report.render import to_html, to_markdown
from benchmark.report.sections import build_sections
from benchmark.store.files import write_text
from benchmark.store.runfolder import RunFolder


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; return their paths."""
    folder = RunFolder(Path(run_dir))
    sections = build_sections(folder)
    title = f"CNN benchmark report — {folder.path.name}"
    write_text(folder.report_md, to_markdown(sections, title, folder.path))
    write_text(folder.report_html, to_html(sections, title))
    return folder.report_md, folder.report_html
