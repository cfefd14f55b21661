"""Reporting: ``report.md`` and a self-contained ``report.html`` built from a run's results alone.

The sections come from :mod:`benchmark.report.sections`, the two renderings from :mod:`benchmark.report.render`.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.report.render import to_html, to_markdown
from benchmark.report.sections import build_sections
from benchmark.store.files import write_text
from benchmark.store.results import RunResults


def write_report(results: RunResults) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder; return their paths."""
    folder = results.folder
    sections = build_sections(results)
    title = f"CNN benchmark report — {folder.path.name}"
    write_text(folder.report_md, to_markdown(sections, title, folder.path))
    write_text(folder.report_html, to_html(sections, title))
    return folder.report_md, folder.report_html
