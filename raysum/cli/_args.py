"""Command-line flags generated from the schema, spelled as in the seed's commands."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing

from raysum.config.schema import Bounds, ExperimentConfig, field_docs

# Flags only the command line has (not settings).
EXTRA_TRAIN_FLAGS = ("config", "set", "resume")
# Flags that fill a setting from a file (decoding_settings drawn from a decoding space).
DECODING_SPACE_FLAGS = ("decoding_space", "decoding_trials")


# What argparse must read as a (negative) number, not as a flag: -1, -1e-4, -.5, -inf, -nan.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with negative numbers in every spelling taken as values (``--learning_rate -1e-4``
    is a value the range check then refuses, not a missing argument); subcommands inherit it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER


def number(kind: type, bounds: Bounds | None = None):
    """An argparse type: a finite int or float inside ``bounds``; anything else is a usage error (exit 2)."""

    def parse(text: str):
        try:
            value = float(text) if kind is float else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a number' if kind is float else 'an integer'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if bounds is not None and not bounds.admits(value):
            raise argparse.ArgumentTypeError(f"must be {bounds.text()}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every ExperimentConfig field as `--<name>`; only flags actually given reach the namespace."""
    docs = field_docs(ExperimentConfig)
    hints = typing.get_type_hints(ExperimentConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    group = parser.add_argument_group("settings (precedence: default < preset < --config file < command line)")
    for name, hint in hints.items():
        kwargs: dict = {"default": argparse.SUPPRESS, "help": docs.get(name, "")}
        base = _strip_optional(hint)
        if base is bool and defaults.get(name) is True:  # on by default: `--name false` turns it off
            kwargs.update(nargs="?", const=True, type=_yes_no, metavar="true|false")
        elif base is bool:
            kwargs["action"] = "store_true"
        elif typing.get_origin(base) is list:
            item = typing.get_args(base)[0]
            kwargs["nargs"] = "+"
            kwargs["type"] = _yaml_mapping if item is dict else item
            kwargs["metavar"] = "YAML" if item is dict else name.upper().rstrip("S") if name.endswith("s") else name.upper()
        else:
            kwargs["type"] = base  # ranges and NaN/inf: checked with the whole config, every problem at once
        group.add_argument(f"--{name}", **kwargs)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="experiment YAML: global keys as the flags, `models` as a list or a mapping "
                             "of per-model overrides")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set models.qwen3-4b.gradient_accumulation_steps=10 "
                             "(VALUE is read as YAML); repeatable")
    parser.add_argument("--decoding_space", default=None, metavar="FILE",
                        help="draw every model's decoding_settings from this decoding search space "
                             "(search_spaces/decoding.yaml), seeded by --seed")
    parser.add_argument("--decoding_trials", type=int, default=None, metavar="K",
                        help="settings drawn from --decoding_space, 1..3 (default 3)")


def _yes_no(text: str) -> bool:
    """A flag value read as true or false (also yes/no, on/off, 1/0)."""
    value = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
             "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _yaml_mapping(text: str) -> dict:
    """A flag value read as a YAML mapping, e.g. '{num_beams: 1, length_penalty: 1.4}'."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML: {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{num_beams: 1}}', got {text!r}")
    return value


def add_search_flags(parser: argparse.ArgumentParser, *, required_space: bool = False) -> None:
    """The training search's flags (not settings: the search records them under DIR/tune/)."""
    group = parser.add_argument_group("search (raysum tune; raysum train --mode optuna)")
    group.add_argument("--space", required=required_space, default=None, metavar="FILE",
                       help="search space YAML (search_spaces/training.yaml, ensemble.yaml, decoding.yaml)")
    group.add_argument("--trials", type=int, default=None, metavar="N",
                       help="number of trials (default: 20 for a training search, 50 on cached candidates)")
    group.add_argument("--scheduler", default=None, metavar="NAME",
                       help="training search: asha (default; stops trials that fall behind after each epoch) "
                            "or fifo (every trial runs to its end)")
    group.add_argument("--metric", default=None, metavar="NAME",
                       help="training search objective reported each epoch: eval_loss (default, min) or eval_score "
                            "(alias dev_score: competition score of summaries of fold 0's held-out part, max)")


def _strip_optional(hint):
    if typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def given_decoding_space(ns: argparse.Namespace) -> dict:
    """--decoding_space / --decoding_trials as given (absent when left out)."""
    return {k: getattr(ns, k) for k in DECODING_SPACE_FLAGS if getattr(ns, k, None) is not None}


def given_settings(ns: argparse.Namespace) -> dict:
    """The settings the user gave on the command line (flags left out are absent)."""
    names = set(typing.get_type_hints(ExperimentConfig))
    return {k: v for k, v in vars(ns).items() if k in names}
