"""What a resume may reuse: each unit records the settings that shape it, and the
experiment records the settings its inputs were written from; a config edited since then
is caught here, before anything runs.

A unit's settings are its model's settings (less the few that change neither what it
learns nor what it generates) and the training seed. Changed unit settings are an error
listing every difference; ``--retrain_changed`` retrains exactly those units, and keeps
their previous files under ``DIR/replaced/<time>/``. Changed input settings (data,
sampling, evaluation sample, folds, augmentation, TTA) cannot be honoured by a resume: the inputs were
written when the experiment was created.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from raysum.config.resolve import ResolvedConfig
from raysum.config.schema import ExperimentConfig, ModelSettings
from raysum.errors import ConfigError
from raysum.experiment import Experiment, layout

# Model settings that change neither what a unit learns nor what it generates.
NOT_SHAPING = ("name", "trust_remote_code", "generation_batch_size", "resources.cpus_per_worker", "checkpoint_every",
               "dataloader_num_workers", "compile")
# Global settings the experiment's inputs (data, sample, folds, variants) were written from.
INPUT_SETTINGS = ("mode", "k_folds", "fold_seed", "max_train_samples", "train_data", "dev_data", "test_data",
                  "data_split_map", "data_columns",
                  "use_augmentation", "augmentation_methods", "augmentation_ratio", "augmentation_translators",
                  "use_tta", "tta_strategies", "tta_num_aug", "max_eval_samples")


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "from_config":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(data: dict) -> dict:
    """As it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


def unit_settings(cfg: ResolvedConfig, model: str) -> dict:
    """The settings that shape a unit of ``model``, flat (``lora.r``), as JSON values."""
    settings = {k: v for k, v in _flat(asdict(cfg.models[model])).items() if k not in NOT_SHAPING}
    return _plain({"seed": cfg.experiment.seed, **settings})


def input_settings(cfg: ResolvedConfig) -> dict:
    return _plain({k: getattr(cfg.experiment, k) for k in INPUT_SETTINGS})


def _default_inputs() -> dict:
    """The input settings of the defaults: what an experiment recorded before a setting existed ran with."""
    return _plain({k: getattr(ExperimentConfig(), k) for k in INPUT_SETTINGS})


def _differences(recorded: dict, now: dict, defaults: dict | None = None) -> list[str]:
    """Settings that differ; one missing from `recorded` (added to raysum since) counts as its
    value in `defaults`, what the older version ran with."""
    missing = object()
    recorded = {**{k: v for k, v in (defaults or {}).items() if k in now}, **recorded}
    return [f"{k}: {recorded.get(k, missing)!r} -> {now.get(k, missing)!r}".replace(repr(missing), "(unset)")
            for k in sorted(set(recorded) | set(now)) if recorded.get(k, missing) != now.get(k, missing)]


def check_resume(path: Path, cfg: ResolvedConfig, units: list, retrain_changed: bool = False) -> list[str]:
    """Refuse a resume whose config no longer matches what was run; with ``retrain_changed``,
    move the changed units aside so they train again. Returns the names of the units moved."""
    exp = Experiment(path)
    recorded_inputs = exp.run_info().get("inputs")
    if recorded_inputs is not None:
        changed = _differences(recorded_inputs, input_settings(cfg), _default_inputs())
        if changed:
            raise ConfigError([f"{path / layout.CONFIG_JSON} changed settings the experiment's inputs were written "
                               "from; a resume cannot apply them (start a new experiment with raysum train "
                               f"--config {path / layout.CONFIG_YAML}): " + "; ".join(changed)])
    changed_units = {}
    for unit in units:
        recorded = exp.unit(unit.model, unit.fold).recorded_settings()
        if recorded is not None:
            diff = _differences(recorded, unit_settings(cfg, unit.model), _plain(_flat(asdict(ModelSettings()))))
            if diff:
                changed_units[unit.name] = (unit, diff)
    if not changed_units:
        return []
    if not retrain_changed:
        raise ConfigError([f"unit {name} was trained with other settings than {layout.CONFIG_JSON} now holds: "
                           + "; ".join(diff) for name, (_, diff) in changed_units.items()]
                          + ["restore the settings, or add --retrain_changed to train exactly these units again "
                             f"(their files are kept under {path / layout.REPLACED_DIR})"])
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    for unit, _ in changed_units.values():
        source = exp.unit(unit.model, unit.fold).path
        target = path / layout.REPLACED_DIR / stamp / unit.model / unit.fold_label
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    return list(changed_units)
