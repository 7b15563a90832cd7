"""Command-line flags generated from the schema, spelled as in the seed's commands."""

from __future__ import annotations

import argparse
import typing

from raysum.config.schema import ExperimentConfig, field_docs

# Flags only the command line has (not settings).
EXTRA_TRAIN_FLAGS = ("config", "set", "resume")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every ExperimentConfig field as `--<name>`; only flags actually given reach the namespace."""
    docs = field_docs(ExperimentConfig)
    hints = typing.get_type_hints(ExperimentConfig)
    group = parser.add_argument_group("settings (precedence: default < preset < --config file < command line)")
    for name, hint in hints.items():
        kwargs: dict = {"default": argparse.SUPPRESS, "help": docs.get(name, "")}
        base = _strip_optional(hint)
        if base is bool:
            kwargs["action"] = "store_true"
        elif typing.get_origin(base) is list:
            kwargs["nargs"] = "+"
            kwargs["type"] = typing.get_args(base)[0]
            kwargs["metavar"] = name.upper().rstrip("S") if name.endswith("s") else name.upper()
        else:
            kwargs["type"] = base
        group.add_argument(f"--{name}", **kwargs)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="experiment YAML: global keys as the flags, `models` as a list or a mapping "
                             "of per-model overrides")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set models.qwen3-4b.gradient_accumulation_steps=10 "
                             "(VALUE is read as YAML); repeatable")


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


def given_settings(ns: argparse.Namespace) -> dict:
    """The settings the user gave on the command line (flags left out are absent)."""
    names = set(typing.get_type_hints(ExperimentConfig))
    return {k: v for k, v in vars(ns).items() if k in names}
