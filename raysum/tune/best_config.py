"""A stage-2 search's ``analysis/best_config.yaml`` read back as a final choice.

``raysum analyze DIR`` writes the best trial of an ensemble or decoding search as the
experiment's complete config with the trial's settings applied (:mod:`.analysis`): the
ensemble strategy and weights, and each model's chosen decoding setting as its own
generation settings. ``raysum finalize DIR --config FILE`` takes that file unchanged;
this module turns it back into what finalize needs — a strategy, weights and a decoding
label per model of DIR — and refuses a file that is not such a config of DIR:

- a training search's best config (it changes what the units learn: it is trained with
  ``raysum train --config FILE``);
- the best config of a search on another experiment (its header names the search);
- a config whose settings other than the stage-2 ones differ from DIR's ``config.json``.

The header lines written by :mod:`.analysis` (the search's Tune run, the decoding labels)
and by :mod:`.training_search` are defined here, next to their reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from raysum.errors import ConfigError
from raysum.experiment import Experiment

# "# best trial of <Tune run>: <metric> <value> (dev <value>)": the first line of a stage-2 best config.
STAGE2_HEADER = "# best trial of "
# "# decoding labels: <model>=<label>, ...": which generated setting each model's own settings are.
LABELS_HEADER = "# decoding labels: "
# The line a training search's best config carries (raysum.tune.training_search).
TRAINING_HEADER = "# train it: raysum train --config"
_RUN = re.compile(r"^# best trial of (?P<run>.+?): \w+ [-\d.naif]+", re.MULTILINE)

# What a stage-2 best config may change: the rest must equal the experiment's config.
STAGE2_GLOBALS = ("ensemble_strategy", "ensemble_weights", "decoding_settings")


@dataclass
class Stage2Choice:
    """What a stage-2 best config chooses for an experiment."""

    file: Path
    run: str  # the Tune run of the search, as its header names it
    strategy: str
    weights: list[float] | None
    decodings: dict[str, str] = field(default_factory=dict)  # model -> decoding label of the experiment


def header(run: Path, metric: str, value: float, dev: float, labels: dict[str, str]) -> str:
    """The header :func:`read_stage2_config` reads: the search's run, the decoding labels chosen."""
    lines = f"{STAGE2_HEADER}{run}: {metric} {value:.4f} (dev {dev:.4f})\n"
    if labels:
        lines += LABELS_HEADER + ", ".join(f"{model}={label}" for model, label in labels.items()) + "\n"
    return lines


def read_stage2_config(file: str | Path, experiment: str | Path) -> Stage2Choice:
    """The choice ``file`` (a stage-2 search's best_config.yaml) makes for ``experiment``;
    ConfigError (every problem) for a file that is not one of this experiment."""
    import yaml

    file, path = Path(file), Path(experiment).resolve()
    text = _read(file)
    where = f"--config {file}"
    if TRAINING_HEADER in text:
        raise ConfigError(f"{where} is a training search's best config: it changes what the units learn, so it is "
                          f"trained (raysum train --config {file}); raysum finalize applies the best config of a "
                          f"stage-2 search (raysum tune --space search_spaces/ensemble.yaml or decoding.yaml "
                          f"--experiment {path}, then raysum analyze {path})")
    match = _RUN.search(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if match is None or not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{where} is not the best config of a stage-2 search of an experiment (raysum analyze "
                          f"{path} writes {Experiment(path).analysis_dir}/best_config.yaml after a search on its "
                          "candidates); give the choice with --strategy, --ensemble_weights and --decoding instead")
    run = match.group("run")
    _check_origin(where, run, path)
    exp = Experiment(path)
    cfg = exp.resolved()
    expected = yaml.safe_load(cfg.to_yaml())
    problems = _differences(file, data, expected, path)
    strategy, weights = data.get("ensemble_strategy"), data.get("ensemble_weights")
    if not isinstance(strategy, str):
        problems.append(f"{where}: ensemble_strategy must be a strategy name, got {strategy!r}")
    if weights is not None and not (isinstance(weights, list) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)):
        problems.append(f"{where}: ensemble_weights must be a list of numbers, got {weights!r}")
    if problems:
        raise ConfigError(problems)
    return Stage2Choice(file=file, run=run, strategy=strategy, weights=weights,
                        decodings=_decoding_labels(where, text, data, cfg))


def _read(file: Path) -> str:
    if not file.is_file():
        raise ConfigError(f"--config {file}: file not found")
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"--config {file}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"--config {file}: cannot be read ({exc.strerror})") from None


def _check_origin(where: str, run: str, path: Path) -> None:
    """The search named in the header ran on ``path`` (or on a copy of it moved elsewhere:
    same directory name)."""
    searched = Path(run).parent.parent
    same = searched.name == path.name
    try:
        same = same or searched.resolve() == path
    except OSError:
        pass
    if not same:
        raise ConfigError(f"{where} is the best config of a search on another experiment ({searched}), not of "
                          f"{path}: its decoding settings and weights name that experiment's candidates; run the "
                          f"search on this one (raysum tune --experiment {path} ...; raysum analyze {path})")


def _flat(data: dict) -> dict[tuple, object]:
    out = {}
    for key, value in data.items():
        if key == "models" and isinstance(value, dict):
            for model, settings in value.items():
                for sub, item in _flat(settings if isinstance(settings, dict) else {}).items():
                    out[("models", model, *sub)] = item
        elif isinstance(value, dict) and value and key != "from_config":
            out.update({(key, *sub): item for sub, item in _flat(value).items()})
        else:
            out[(key,)] = value
    return out


def _is_stage2(key: tuple) -> bool:
    from raysum.generation.decodings import DECODING_KEYS

    if key[0] == "models":
        return len(key) == 3 and key[2] in (*DECODING_KEYS, "decoding_settings")
    return key[0] in STAGE2_GLOBALS


def _differences(file: Path, data: dict, expected: dict, path: Path) -> list[str]:
    """Settings other than the stage-2 ones that differ from the experiment's (a setting
    the file does not hold — written before raysum had it — counts as the experiment's)."""
    where = f"--config {file}"
    got, want = _flat(data), _flat(expected)
    models, theirs = list(expected["models"]), list(data["models"])
    if sorted(models) != sorted(theirs):
        return [f"{where} is for models {', '.join(theirs)}; {path} has {', '.join(models)}: it is the config of "
                "another experiment"]
    changed = [f"{'.'.join(key)}: {want[key]!r} -> {value!r}" if key in want else f"{'.'.join(key)}: unknown setting"
               for key, value in got.items() if not _is_stage2(key) and (key not in want or want[key] != value)]
    if not changed:
        return []
    more = f"; and {len(changed) - 8} more" if len(changed) > 8 else ""
    return [f"{where} changes settings {path} was trained with, not only the ensemble and decoding choices of a "
            f"stage-2 search: {'; '.join(changed[:8])}{more}. A training search's best config or another "
            f"experiment's config is trained: raysum train --config {file}"]


def _decoding_labels(where: str, text: str, data: dict, cfg) -> dict[str, str]:
    """The experiment's decoding label each model's own settings in the file are: the
    header's labels when it names them (checked), else the one generated setting equal to them."""
    from raysum.generation.decodings import DECODING_KEYS, decoding_table, own_settings, with_decoding

    named = {}
    for line in text.splitlines():
        if line.startswith(LABELS_HEADER):
            for item in line[len(LABELS_HEADER):].split(","):
                model, _, label = item.strip().partition("=")
                named[model] = label
    out, problems = {}, []
    for model, settings in cfg.models.items():
        given = data["models"].get(model) or {}
        decoding = own_settings(with_decoding(settings, {k: given[k] for k in DECODING_KEYS if k in given}))
        table = decoding_table(settings)
        labels = [label for label, known in table.items() if known == decoding]
        if model in named and named[model] in labels:
            out[model] = named[model]
        elif len(labels) == 1:
            out[model] = labels[0]
        elif labels:
            problems.append(f"models.{model}: its decoding settings {decoding} are {' and '.join(labels)} of the "
                            f"experiment (the same sampled setting twice); give --decoding {model}=<label>")
        else:
            listed = "; ".join(f"{label} {known}" for label, known in table.items())
            problems.append(f"models.{model}: its decoding settings {decoding} are none the experiment generated "
                            f"({listed})")
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    return out
