"""Writing the report: plots (when asked), report.md, and report.html (when asked)."""

from __future__ import annotations

from pathlib import Path

from raysum.errors import ConfigError
from raysum.experiment import Experiment
from raysum.storage import write_text_atomic
from raysum.report._load import load_experiment
from raysum.report._markdown import render_markdown
from raysum.report._plots import write_plots

FORMATS = ("md", "html")


def write_report(path: str | Path, *, plots: bool, formats: tuple[str, ...] = ("md",)) -> list[Path]:
    """report.md (always) and report.html (format html) in the experiment directory; with
    `plots`, the PNGs in plots/ first, embedded in both. Returns the files written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"report format {', '.join(map(repr, unknown))} is unknown; choose from {', '.join(FORMATS)}")
    record = load_experiment(path)
    written = write_plots(record) if plots else []
    text = render_markdown(record, written)
    exp = Experiment(record.path)
    target = write_text_atomic(exp.report_file, text)
    files = [*written, target]
    if "html" in formats:
        from raysum.report._html import render_html

        page = write_text_atomic(exp.report_html_file,
                                 render_html(text, record.path, f"raysum report: {record.path.name}"))
        files.append(page)
    return files
