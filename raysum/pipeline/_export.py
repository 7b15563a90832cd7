"""`raysum export`: one finished unit of an experiment as a plain Hugging Face model folder
(:mod:`raysum.models.export`), written beside the target and renamed into place, so a
folder at the target is either the previous one or the complete new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from raysum.errors import ConfigError, RaysumError
from raysum.experiment import Experiment, layout


def export_unit(path: str | Path, unit: str, out: str | Path, *, adapter_only: bool = False,
                decoding: str | None = None, force: bool = False, console: Console | None = None) -> Path:
    """Write unit ``MODEL/FOLD`` of the experiment at ``path`` to the folder ``out``; a folder
    already there is replaced only with ``force``. Returns ``out``."""
    from raysum.generation.decodings import DECODING_KEYS, DEFAULT, decoding_table, with_decoding
    from raysum.models import export_model
    from raysum.models.export import check_exportable

    console = console or Console()
    path, out = Path(path).resolve(), Path(out).absolute()
    exp = Experiment(path)
    cfg = exp.resolved()
    model, label = _unit_of(unit, cfg.models, exp)
    files = exp.unit(model, label)
    if not files.done():
        raise RaysumError(f"unit {model}/{label} of {path} has not finished training: nothing to export "
                          f"(finish it with raysum train --resume {path})")
    check_exportable(files.checkpoint_dir, adapter_only)
    settings = cfg.models[model]
    if settings.prompt_strategy == "few_shot":
        raise ConfigError(f"{model} prompts with few-shot examples picked per dialogue from its unit's training part, "
                          "which generate alone cannot do; export a unit of a zero_shot or instruction_ko model")
    table = decoding_table(settings)
    chosen = decoding or DEFAULT
    if chosen not in table:
        raise ConfigError(f"--decoding {chosen}: {model} has decoding setting(s) {', '.join(table)}")
    applied = with_decoding(settings, table[chosen])
    settings_of_decoding = {key: getattr(applied, key) for key in DECODING_KEYS}
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"--out {out} exists and is not empty; give a new folder, or --force to replace it")
    if out == path or path in out.parents:
        raise ConfigError(f"--out {out} is inside the experiment {path}; give a folder outside it")
    info = {"unit": f"{model}/{label}", "experiment": str(path), "model": model, "decoding_label": chosen,
            "fold": layout.fold_of(label)}
    console.print(f"exporting unit {model}/{label} ({'LoRA adapter' if adapter_only else 'merged weights'}, "
                  f"decoding {chosen}) to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        notes = export_model(settings, files.checkpoint_dir, staging, decoding=settings_of_decoding, info=info,
                             adapter_only=adapter_only)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for note in notes:
        console.print(f"[cyan]note:[/] {note}")
    console.print(f"[bold green]exported[/] {out}")
    return out


def _unit_of(unit: str, models: dict, exp: Experiment) -> tuple[str, str]:
    """(model, fold label) of ``MODEL/FOLD`` (FOLD: fold0, 0 or full)."""
    model, sep, fold = unit.rpartition("/")
    if not sep or not model or not fold:
        raise ConfigError(f"--unit {unit!r}: give MODEL/FOLD, e.g. {next(iter(models))}/fold0")
    if model not in models:
        raise ConfigError(f"--unit {unit!r}: the experiment has model(s) {', '.join(models)}")
    label = layout.fold_label(int(fold)) if fold.isdigit() else fold
    labels = exp.unit_labels(model)
    if label not in labels:
        raise ConfigError(f"--unit {unit!r}: {model} has unit(s) {', '.join(labels) or 'none yet'}")
    return model, label


def _move_into_place(staging: Path, out: Path) -> None:
    """``staging`` renamed to ``out``; a previous ``out`` is moved aside first and removed
    only once the new folder is in place."""
    if not out.exists():
        os.replace(staging, out)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{out.name}-previous-", dir=out.parent))
    os.replace(out, previous / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(previous / out.name, out)
        raise
    shutil.rmtree(previous, ignore_errors=True)
