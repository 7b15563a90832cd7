"""The experiment report: report.md (and report.html), its plots and automatic checks,
all read from an experiment directory's files.

    >>> from raysum.report import write_report
    >>> write_report("outputs/20250101_120000_demo", plots=True, formats=("md", "html"))
"""

from raysum.report._checks import CHECKS, Check, register_check, run_checks
from raysum.report._load import ExperimentRecord, UnitRecord, load_experiment
from raysum.report._plots import PLOTS, PLOTS_DIR, register_plot, write_plots
from raysum.report._write import FORMATS, write_report

__all__ = [
    "CHECKS",
    "FORMATS",
    "PLOTS",
    "PLOTS_DIR",
    "Check",
    "ExperimentRecord",
    "UnitRecord",
    "load_experiment",
    "register_check",
    "register_plot",
    "run_checks",
    "write_plots",
    "write_report",
]
