"""The `raysum` command line: train, config show, data check, score, ensemble, finalize, predict, tune, analyze,
report, cluster."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from raysum.cli._args import (
    Parser, add_search_flags, add_train_flags, given_decoding_space, given_settings, number,
)
from raysum.cli._interrupts import Interrupts
from raysum.config.schema import Bounds
from raysum.errors import ConfigError, Interrupted, RaysumError
from raysum.ray_processes import end_leftovers

__all__ = ["main", "build_parser"]

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="raysum", description="Ray-distributed fine-tuning and ensembles for dialogue summarization")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train models x folds, generate, score, write a submission")
    add_train_flags(train)
    train.add_argument("--resume", default=None, metavar="DIR",
                       help="continue an experiment directory: finished units are reused")
    train.add_argument("--retrain_changed", action="store_true",
                       help="with --resume: train again the units whose recorded settings differ from the "
                            "experiment's config.json (their previous files are kept under DIR/replaced/)")
    train.add_argument("--force", action="store_true",
                       help="with --resume: replace DIR/submission.csv without keeping the previous one "
                            "(default: kept as submission.<YYYYMMDD-HHMMSS>.csv beside it)")
    add_search_flags(train)
    train.set_defaults(func=_cmd_train)

    config = sub.add_parser("config", help="inspect the resolved configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print every resolved setting with its source")
    add_train_flags(show)
    show.add_argument("--json", action="store_true", help="print JSON: every leaf is {value, source}")
    show.set_defaults(func=_cmd_config_show)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate a dataset file and print statistics")
    check.add_argument("path", help="CSV, JSONL or Parquet file (fname, dialogue, summary[1..N], topic), a "
                                    "save_to_disk folder or hf://ORG/NAME[:CONFIG]")
    check.add_argument("--split", default=None, metavar="NAME",
                       help="the split to check of data with several (hf://, a save_to_disk DatasetDict)")
    check.add_argument("--data_columns", nargs="+", default=None, metavar="FIELD=COLUMN",
                       help="the data's columns for fname, dialogue, summary, topic where the names differ, "
                            "e.g. fname=id summary=summary1,summary2,summary3")
    check.set_defaults(func=_cmd_data_check)

    score = sub.add_parser("score", help="Korean ROUGE of predictions against references")
    score.add_argument("--predictions", required=True, help="CSV with fname,summary")
    score.add_argument("--references", required=True, help="dataset file with summary or summary1..N")
    score.add_argument("--tokenizer", default="kiwi", choices=["kiwi", "whitespace"])
    score.add_argument("--json", action="store_true")
    score.set_defaults(func=_cmd_score)

    ensemble = sub.add_parser("ensemble", help="evaluate an ensemble strategy on a finished experiment's candidates")
    ensemble.add_argument("--experiment", required=True, metavar="DIR")
    ensemble.add_argument("--strategy", required=True,
                          help="voting | weighted_avg | stacking (aliases: majority_vote, averaging, rouge_weighted, "
                               "blending)")
    ensemble.add_argument("--ensemble_weights", nargs="+", type=number(float, Bounds(0)), default=None, metavar="W",
                          help="one weight per model (weighted_avg)")
    ensemble.add_argument("--json", action="store_true")
    ensemble.set_defaults(func=_cmd_ensemble)

    finalize = sub.add_parser(
        "finalize", help="the final submission from a finished experiment's cached candidates (no training): an "
                         "ensemble strategy, weights and a decoding setting per model, from a stage-2 search's best "
                         "config and/or flags; writes submission.csv, scores.json, the report")
    finalize.add_argument("path", metavar="DIR", help="a finished experiment directory")
    finalize.add_argument("--config", default=None, metavar="FILE",
                          help="a stage-2 (ensemble and/or decoding) search's best config, as `raysum analyze DIR` "
                               "writes it (DIR/analysis/best_config.yaml); the flags below override it")
    finalize.add_argument("--strategy", default=None,
                          help="voting | weighted_avg | stacking (default: --config's, else the experiment's)")
    finalize.add_argument("--ensemble_weights", nargs="+", type=number(float, Bounds(0)), default=None, metavar="W",
                          help="one weight per model (weighted_avg)")
    finalize.add_argument("--decoding", nargs="+", default=None, metavar="MODEL=dK",
                          help="a model's decoding setting: d0 its own, d1..d3 its decoding_settings, or all (every "
                               "setting it generated, pooled: the ensemble chooses among them, e.g. among sampled "
                               "candidates) (default: --config's, else d0); one missing for test is generated by the "
                               "saved units")
    finalize.add_argument("--ray_address", default=None,
                          help="the Ray cluster that runs the ensemble task and generates missing test candidates "
                               "(default: the experiment's ray_address, else RAY_ADDRESS, else a local Ray)")
    finalize.add_argument("--ensemble_cpus", type=number(int, Bounds(1)), default=None, metavar="N",
                          help="CPUs of the ensemble task (default: the experiment's ensemble_cpus, else every CPU "
                               "of the cluster's largest node, at most 8)")
    finalize.add_argument("--force", action="store_true",
                          help="replace DIR/submission.csv without keeping the previous one (default: kept as "
                               "submission.<YYYYMMDD-HHMMSS>.csv beside it)")
    finalize.add_argument("--json", action="store_true", help="print the choice and its scores as JSON")
    finalize.set_defaults(func=_cmd_finalize, path_kind="dir")

    export = sub.add_parser(
        "export", help="a finished unit as a plain Hugging Face model folder (LoRA merged, safetensors, tokenizer, "
                       "generation_config with the unit's decoding) for from_pretrained + generate")
    export.add_argument("path", metavar="DIR", help="a finished experiment directory")
    export.add_argument("--unit", required=True, metavar="MODEL/FOLD", help="the unit, e.g. kobart/fold0 or kobart/full")
    export.add_argument("--out", required=True, metavar="PATH", help="the model folder to write (new or empty)")
    export.add_argument("--adapter_only", action="store_true",
                        help="write the LoRA adapter (for peft's PeftModel.from_pretrained on the base checkpoint) "
                             "instead of merged weights")
    export.add_argument("--decoding", default=None, metavar="dK",
                        help="the decoding setting written to generation_config.json: d0 (default) the model's own, "
                             "d1..d3 its decoding_settings")
    export.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    export.set_defaults(func=_cmd_export, path_kind="dir")

    predict = sub.add_parser("predict", help="generate a submission for a new file with a trained experiment")
    predict.add_argument("--experiment", required=True, metavar="DIR")
    predict.add_argument("--test_data", required=True, metavar="FILE")
    predict.add_argument("--output", default=None, metavar="FILE", help="default: DIR/predictions/<file stem>/submission.csv")
    predict.add_argument("--ray_address", default=None)
    predict.add_argument("--force", action="store_true",
                         help="replace the output file without keeping the previous one (default: kept beside it "
                              "as <name>.<YYYYMMDD-HHMMSS>.csv)")
    predict.set_defaults(func=_cmd_predict)

    tune = sub.add_parser(
        "tune", help="Ray Tune + Optuna search: training settings (a new experiment directory, a unit per trial) or "
                     "ensemble settings on a finished experiment's candidates (CPU, writes DIR/tune/)")
    add_search_flags(tune)
    tune.add_argument("--experiment", default=None, metavar="DIR",
                      help="ensemble/decoding spaces: the finished experiment whose candidates are searched")
    tune.add_argument("--resume", default=None, metavar="DIR", help="continue an interrupted training search")
    tune.add_argument("--max_concurrent", type=number(int, Bounds(1)), default=None,
                      help="trials at once (default: training, as many units as fit on the cluster; "
                           "candidates, one per core, at most CPUs - 1)")
    tune.add_argument("--tokenizer", default="kiwi", choices=["kiwi", "whitespace"],
                      help="ROUGE tokens (default kiwi)")
    tune.add_argument("--ensemble_space", default=None, metavar="FILE",
                      help="with a decoding space: search the ensemble strategy and weights jointly "
                           "(search_spaces/ensemble.yaml); default: the experiment's own strategy")
    tune.add_argument("--json", action="store_true")
    add_train_flags(tune)  # a training search resolves its config exactly as `raysum train`
    tune.set_defaults(func=_cmd_tune)

    analyze = sub.add_parser("analyze", help="read a Tune search back: trials table, analysis/best_config.yaml, plots")
    analyze.add_argument("path", metavar="DIR", help="an experiment directory with tune/, or a Tune experiment directory")
    analyze.set_defaults(func=_cmd_analyze, path_kind="dir")
    cluster = sub.add_parser("cluster", help="a multi-node Ray cluster on this machine (head + worker nodes)")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    cluster_up = cluster_sub.add_parser("up", help="start a head on 127.0.0.1 and worker nodes node_a, node_b, ...")
    cluster_up.add_argument("--workers", type=number(int, Bounds(1, 64)), default=2, help="worker nodes (default 2)")
    cluster_up.add_argument("--worker_cpus", type=number(float, Bounds(0, low_open=True)), default=1, help="logical CPUs per worker (default 1)")
    cluster_up.add_argument("--head_cpus", type=number(float, Bounds(0)), default=0,
                            help="logical CPUs of the head (default 0: units run on the workers)")
    cluster_up.add_argument("--port", type=number(int, Bounds(1, 65535)), default=6379, help="GCS port (default 6379)")
    cluster_up.add_argument("--dashboard_port", type=number(int, Bounds(1, 65535)), default=8265, help="dashboard / job API (default 8265)")
    cluster_down = cluster_sub.add_parser("down", help="stop the nodes `cluster up` started (no other Ray process)")
    for command in (cluster_up, cluster_down):
        command.add_argument("--state", default=".raysum-cluster", metavar="DIR",
                             help="where the cluster's record, token and logs live (default .raysum-cluster)")
    cluster.set_defaults(func=_cmd_cluster)

    report = sub.add_parser("report", help="write DIR/report.md and the plots in DIR/plots/ for an experiment "
                                           "(--format html: also a self-contained DIR/report.html)")
    report.add_argument("path", metavar="DIR", help="an experiment directory")
    report.add_argument("--format", nargs="+", default=["md"], choices=["md", "html"],
                        help="md (report.md, always written) and/or html (report.html, images inlined)")
    report.set_defaults(func=_cmd_report, path_kind="dir")
    return parser


def resolve_from_args(ns: argparse.Namespace):
    from raysum.config.resolve import resolve
    from raysum.pipeline import validate

    cfg = resolve(given_settings(ns), config_file=ns.config, overrides=ns.set)
    space = given_decoding_space(ns)
    if space:
        from raysum.generation.decodings import apply_decoding_space

        apply_decoding_space(cfg, space.get("decoding_space"), space.get("decoding_trials"))
    return validate(cfg)


def _print_warnings(cfg) -> None:
    from raysum.config.resolve import JOB_DEFAULT

    if cfg.sources.get("output_dir") == JOB_DEFAULT:
        err_console.print(f"note: inside a Ray job, experiment directories go to {cfg.experiment.output_dir} (the "
                          "job's default output_dir: outputs/ would land in the job's temporary working directory; "
                          "--output_dir ABSOLUTE_PATH chooses another)", markup=False, highlight=False, soft_wrap=True)
    for warning in cfg.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")


def _cmd_config_show(ns: argparse.Namespace) -> int:
    cfg = resolve_from_args(ns)
    if ns.json:
        print(json.dumps(cfg.tree(), ensure_ascii=False, indent=2))
    else:
        _print_warnings(cfg)
        console.print(cfg.to_yaml(), markup=False, highlight=False, soft_wrap=True)
    return 0


def _write_report(path, cfg, console) -> None:
    """report.md at the end of every run (and after failed units, for the post-mortem);
    plots with --save_visualizations."""
    from raysum.report import write_report

    files = write_report(path, plots=cfg.experiment.save_visualizations)
    plots = [f for f in files if f.suffix == ".png"]
    report = next(f for f in files if f.suffix == ".md")
    console.print(f"[bold]report[/] {report}" + (f" with {len(plots)} plots in {plots[0].parent}" if plots else ""))


def _cmd_train(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from raysum.pipeline import refuse_resume_settings, run_experiment

    search_flags = [f"--{k}" for k in ("space", "trials", "scheduler", "metric") if getattr(ns, k) is not None]
    if ns.resume:
        from raysum.pipeline import resume_experiment
        from raysum.tune.training_search import is_training_search, resume_training_search

        if search_flags:
            raise ConfigError(f"--resume continues {ns.resume} with the settings it was started with; "
                              f"drop {', '.join(search_flags)}")
        settings = {**given_settings(ns), **given_decoding_space(ns)}
        ray_address = settings.pop("ray_address", None)  # where it runs, not what: a resume may move
        path = Path(ns.resume).resolve()
        if is_training_search(path):
            refuse_resume_settings(path, settings, ns.config, ns.set)
            resume_training_search(path, console, ray_address=ray_address)
            return 0
        resume_experiment(path, settings, ns.config, ns.set, console=console, after=_write_report,
                          retrain_changed=ns.retrain_changed, force=ns.force, ray_address=ray_address)
        return 0
    if ns.retrain_changed:
        raise ConfigError("--retrain_changed applies to --resume DIR (units of an existing experiment)")
    if ns.force:
        raise ConfigError("--force applies to --resume DIR (a new experiment replaces no submission)")
    cfg = resolve_from_args(ns)
    if cfg.experiment.mode == "optuna":
        if ns.space is None:
            raise ConfigError("--mode optuna searches training settings: give --space search_spaces/training.yaml "
                              "(and --trials N)")
        _print_warnings(cfg)
        return _run_training_search(ns, cfg)
    if search_flags:
        raise ConfigError(f"{', '.join(search_flags)}: for --mode optuna only (the training search), "
                          f"not mode {cfg.experiment.mode}")
    _print_warnings(cfg)
    run_experiment(cfg, command_line=sys.argv, console=console, after=_write_report)
    return 0


def _cmd_data_check(ns: argparse.Namespace) -> int:
    from raysum.data import check_dataset, parse_columns, print_check

    columns, problems = parse_columns(ns.data_columns)
    if problems:
        raise ConfigError(problems)
    check = check_dataset(ns.path, split=ns.split, columns=columns)
    print_check(check, ns.path, console)
    return 0 if check.ok else 2  # bad data, like every data error


def _cmd_score(ns: argparse.Namespace) -> int:
    from rich.markup import escape

    from raysum.scoring import score_files

    result = score_files(ns.predictions, ns.references, tokenizer=ns.tokenizer)
    for warning in result["warnings"]:  # stderr, so that --json output stays one JSON object
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    if ns.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        from rich.table import Table

        table = Table(title=f"Korean ROUGE ({ns.tokenizer} tokens, F1, mean over dialogues)")
        for key in ("n", "rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score"):
            table.add_column(key, justify="right")
        table.add_row(str(result["n"]), *(f"{result[k]:.4f}" for k in ("rouge1", "rouge2", "rougeL", "rouge_sum")),
                      f"{result['competition_score']:.2f}")
        console.print(table)
    return 0


def _cmd_ensemble(ns: argparse.Namespace) -> int:
    from raysum.pipeline import ensemble_experiment

    result = ensemble_experiment(ns.experiment, ns.strategy, ns.ensemble_weights)
    _refresh_report(ns.experiment, err_console if ns.json else console)
    if ns.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    from rich.table import Table

    table = Table(title=f"ensemble {result['strategy']} vs the best single unit ({result['best_single']['unit']})")
    for col in ("", "R1", "R2", "RL", "rouge_sum", "competition_score"):
        table.add_column(col, justify="right" if col else "left")
    for label, s in (("ensemble OOF", result["oof"]), ("ensemble dev", result["dev"]),
                     ("best single dev", result["best_single"]["dev"])):
        if s:
            table.add_row(label, f"{s['rouge1']:.4f}", f"{s['rouge2']:.4f}", f"{s['rougeL']:.4f}",
                          f"{s['rouge_sum']:.4f}", f"{s['competition_score']:.2f}")
    console.print(table)
    return 0


def _cmd_finalize(ns: argparse.Namespace) -> int:
    from raysum.pipeline import finalize_experiment

    out = err_console if ns.json else console  # --json: stdout holds the JSON object only
    result = finalize_experiment(ns.path, _final_request(ns), ray_address=ns.ray_address,
                                 ensemble_cpus=ns.ensemble_cpus, console=out, force=ns.force, after=_rewrite_report)
    if ns.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    from rich.table import Table

    console.print(f"[bold]final choice[/]: {result['choice']}")
    for part, source in result["from"].items():
        console.print(f"  {part}: {source}")
    best, default = result["best_single"], result.get("default") or {}
    table = Table(title="the final choice next to the best single unit")
    for col in ("", "OOF competition_score", "dev competition_score"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("final choice", result["oof"], result["dev"]), (f"best single unit {best['unit']}", best["oof"],
                                                               best["dev"])]
    if default:
        rows.append((f"the experiment's {default['strategy']} (models' own decoding)", default.get("oof"),
                     default.get("dev")))
    for label, oof, dev in rows:
        table.add_row(label, *("-" if not s else f"{s['competition_score']:.2f}" for s in (oof, dev)))
    console.print(table)
    console.print(f"[bold green]submission[/] {result['submission']}")
    if result["kept"]:
        console.print(f"the previous submission is kept as {result['kept']} (--force replaces it without keeping)")
    return 0


def _final_request(ns: argparse.Namespace):
    """--config's choice, then the flags over it, each part with where it came from."""
    from raysum.pipeline import WEIGHTS_FLAG, FinalRequest

    request = FinalRequest()
    if ns.config:
        from raysum.tune.best_config import read_stage2_config

        chosen = read_stage2_config(ns.config, ns.path)
        source = f"--config {ns.config} (best trial of {chosen.run})"
        request.strategy, request.weights = chosen.strategy, chosen.weights
        request.decodings = dict(chosen.decodings)
        request.sources = {"strategy": source, "weights": source, **{f"decoding.{m}": source for m in chosen.decodings}}
    if ns.strategy:
        request.strategy, request.sources["strategy"] = ns.strategy, "--strategy"
    if ns.ensemble_weights is not None:
        request.weights, request.sources["weights"] = ns.ensemble_weights, WEIGHTS_FLAG
    problems = []
    for item in ns.decoding or []:
        model, sep, label = item.partition("=")
        if not sep or not model or not label:
            problems.append(f"--decoding {item!r}: expected MODEL=LABEL, e.g. tiny-bart=d1")
            continue
        request.decodings[model], request.sources[f"decoding.{model}"] = label, "--decoding"
    if problems:
        raise ConfigError(problems)
    return request


def _refresh_report(path, console) -> None:
    """An experiment's report.md, where it has one, rewritten after a command changed what it
    shows (scores.json, tune/)."""
    from raysum.experiment import Experiment

    exp = Experiment(path)
    if exp.report_file.is_file():
        _rewrite_report(path, exp.resolved(), console)


def _rewrite_report(path, cfg, console) -> None:
    """report.md after finalize, ensemble or a stage-2 search (report.html too where there
    is one; the plots where there are some)."""
    from raysum.experiment import Experiment
    from raysum.report import PLOTS_DIR, write_report

    exp = Experiment(path)
    formats = ("md", "html") if exp.report_html_file.is_file() else ("md",)
    try:
        files = write_report(path, plots=cfg.experiment.save_visualizations or (exp.path / PLOTS_DIR).is_dir(),
                             formats=formats)
    except Exception as exc:  # noqa: BLE001 - the submission is written; the report can be written again
        console.print(f"[yellow]warning:[/] the report was not rewritten ({exc}); raysum report {path} writes it")
        return
    console.print("[bold]report[/] " + ", ".join(str(f) for f in files if f.suffix != ".png"))


def _cmd_export(ns: argparse.Namespace) -> int:
    from raysum.pipeline import export_unit

    export_unit(ns.path, ns.unit, ns.out, adapter_only=ns.adapter_only, decoding=ns.decoding, force=ns.force,
                console=console)
    return 0


def _cmd_predict(ns: argparse.Namespace) -> int:
    from raysum.pipeline import predict_experiment

    predict_experiment(ns.experiment, ns.test_data, ns.output, ray_address=ns.ray_address, console=console,
                       force=ns.force)
    return 0


# Flags each kind of search takes besides --space; anything else given is refused.
TRAINING_SEARCH_FLAGS = {"trials", "scheduler", "metric", "max_concurrent", "tokenizer", "json", "config", "set"}
CANDIDATE_SEARCH_FLAGS = {"experiment", "trials", "max_concurrent", "tokenizer", "json", "seed", "num_cpus",
                          "ensemble_space", "ray_address"}
SEARCH_DEFAULTS = {"tokenizer": "kiwi", "json": False, "set": []}


def _given_tune_flags(ns: argparse.Namespace) -> set[str]:
    flags = {k for k in ("experiment", "resume", "trials", "scheduler", "metric", "max_concurrent", "config",
                         "ensemble_space") if getattr(ns, k) is not None}
    flags |= {k for k, v in SEARCH_DEFAULTS.items() if getattr(ns, k) != v}
    return flags | set(given_settings(ns)) | set(given_decoding_space(ns))


def _refuse_flags(given: set[str], allowed: set[str], why: str) -> None:
    extra = sorted(given - allowed)
    if extra:
        raise ConfigError(f"{why}; drop {', '.join('--' + f for f in extra)}")


def _cmd_tune(ns: argparse.Namespace) -> int:
    from raysum.tune.space import load_space

    given = _given_tune_flags(ns)
    if ns.resume:
        _refuse_flags(given, {"resume", "json", "ray_address"}, f"--resume continues {ns.resume} with the settings "
                      "it was started "
                                                 "with (DIR/tune/training_search.json)")
        return _cmd_resume_training_search(ns)
    if ns.space is None:
        raise ConfigError("--space FILE is required (search_spaces/training.yaml, ensemble.yaml or decoding.yaml), "
                          "or --resume DIR to continue a training search")
    space = load_space(ns.space)
    return SEARCHES[space.space](ns, given)


def _cmd_tune_training(ns: argparse.Namespace, given: set[str]) -> int:
    settings = set(given_settings(ns)) | set(given_decoding_space(ns))
    _refuse_flags(given - settings, TRAINING_SEARCH_FLAGS,
                  f"{ns.space} is a training space: the search trains units in a new experiment directory "
                  "(--output_dir, --experiment_name), it does not read a finished experiment's candidates")
    if "mode" in settings and ns.mode != "optuna":
        raise ConfigError(f"raysum tune with a training space runs mode optuna; drop --mode {ns.mode}")
    ns.mode = "optuna"
    cfg = resolve_from_args(ns)
    _print_warnings(cfg)
    return _run_training_search(ns, cfg)


def _run_training_search(ns: argparse.Namespace, cfg) -> int:
    from raysum.tune.training_search import search_training

    result = search_training(cfg, ns.space, trials=20 if ns.trials is None else ns.trials,
                             scheduler=ns.scheduler or "asha", metric=ns.metric or "eval_loss",
                             tokenizer=getattr(ns, "tokenizer", "kiwi"), max_concurrent=getattr(ns, "max_concurrent", None),
                             command_line=sys.argv, console=None if getattr(ns, "json", False) else console)
    return _print_training_search(result, getattr(ns, "json", False))


def _cmd_resume_training_search(ns: argparse.Namespace) -> int:
    from raysum.tune.training_search import resume_training_search

    result = resume_training_search(ns.resume, console=None if ns.json else console,
                                    ray_address=getattr(ns, "ray_address", None))
    return _print_training_search(result, ns.json)


def _print_training_search(result: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    metric = result["metric"]
    for model, best in result["best"].items():
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        console.print(f"{model}: best of {best['trials']} trial(s) ({best['errors']} errored): {metric} "
                      f"{best[metric]:.4f} with {params} ({result['search_s'][model]:.0f} s)")
    console.print(f"wrote {result['experiment']}/tune/training_best.json; "
                  f"raysum analyze {result['experiment']} writes analysis/best_config.yaml")
    return 0


def _cmd_tune_candidates(ns: argparse.Namespace, given: set[str]) -> int:
    _refuse_flags(given, CANDIDATE_SEARCH_FLAGS,
                  f"{ns.space} searches a finished experiment's cached candidates (--experiment DIR); training "
                  "settings, --config/--set, --scheduler and --metric belong to a training search")
    if ns.experiment is None:
        raise ConfigError(f"{ns.space} searches a finished experiment's candidates: give --experiment DIR")
    _check_ranges(ns, ("seed", "num_cpus"))
    options = dict(trials=50 if ns.trials is None else ns.trials, seed=getattr(ns, "seed", None),
                   num_cpus=getattr(ns, "num_cpus", None), max_concurrent=ns.max_concurrent, tokenizer=ns.tokenizer,
                   ray_address=getattr(ns, "ray_address", None), console=None if ns.json else console)
    from raysum.experiment.lock import ExperimentLock

    with ExperimentLock(ns.experiment, "tune"):
        result = _search_candidates(ns, options)
        _refresh_report(ns.experiment, err_console if ns.json else console)
    if ns.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    _print_candidate_search(result)
    return 0


def _search_candidates(ns: argparse.Namespace, options: dict) -> dict:
    from raysum.tune.space import load_space

    if load_space(ns.space).space == "decoding":
        from raysum.tune.decoding_search import search_decoding

        result = search_decoding(ns.experiment, ns.space, ensemble_space=ns.ensemble_space, **options)
    elif ns.ensemble_space:
        raise ConfigError("--ensemble_space joins a decoding search (--space search_spaces/decoding.yaml)")
    else:
        from raysum.tune.ensemble_search import search_ensemble

        result = search_ensemble(ns.experiment, ns.space, **options)
    return result


def _print_candidate_search(result: dict) -> None:
    best = result["best"]
    weights = ", ".join(f"{m}={w:.3f}" for m, w in (best["weights"] or {}).items())
    console.print(f"best of {result['trials']} trial(s): {best['strategy']}" + (f" ({weights})" if weights else ""))
    for model, decoding in best.get("decodings", {}).items():
        console.print(f"  {model}: {decoding['label']} {decoding['settings']}")
    for label, s in (("OOF (optimised)", result["oof"]), ("dev", result["dev"]),
                     ("every model's own decoding, dev", (result.get("own_decoding") or {}).get("dev")),
                     (f"best single {result['best_single']['unit']} dev", result["best_single"]["dev"])):
        if s:
            console.print(f"  {label}: competition_score {s['competition_score']:.2f}")
    console.print(f"{result['timing']['trials_per_minute']} trials/minute; wrote {result['tune_run']} and "
                  f"{result['best_file']}")


def _check_ranges(ns: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Settings flags a command uses without resolving a config: the schema's ranges still hold."""
    from raysum.config.schema import ExperimentConfig, field_bounds

    bounds = field_bounds(ExperimentConfig)
    given = {k: getattr(ns, k) for k in names if getattr(ns, k, None) is not None}
    problems = [f"--{k} must be {bounds[k].text()}, got {v}" for k, v in given.items() if not bounds[k].admits(v)]
    if problems:
        raise ConfigError(problems)


# The kind of a search space picks the search.
SEARCHES = {"training": _cmd_tune_training, "ensemble": _cmd_tune_candidates, "decoding": _cmd_tune_candidates}


def _cmd_analyze(ns: argparse.Namespace) -> int:
    from raysum.tune.analysis import analyze

    from raysum.experiment.lock import ExperimentLock

    with ExperimentLock(ns.path, "analyze"):
        analyze(ns.path, console)
    return 0


def _cmd_cluster(ns: argparse.Namespace) -> int:
    from raysum import cluster

    if ns.cluster_command == "down":
        stopped = cluster.down(ns.state)
        console.print(f"stopped {', '.join(stopped) or 'nothing (the nodes had exited)'}")
        return 0
    local = cluster.up(ns.state, workers=ns.workers, worker_cpus=ns.worker_cpus, head_cpus=ns.head_cpus,
                       port=ns.port, dashboard_port=ns.dashboard_port)
    for node in local.nodes:
        console.print(f"{node.name}: node {node.node_id}, {node.num_cpus:g} CPU {node.resources or ''}, log {node.log}")
    exports = " ".join(f"{k}={v}" for k, v in local.client_env().items())
    console.print(f"dashboard {local.dashboard_url}; for `ray job submit`:\n  export {exports}", soft_wrap=True)
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    from raysum.report import write_report

    from raysum.experiment.lock import ExperimentLock

    with ExperimentLock(ns.path, "report"):
        files = write_report(ns.path, plots=True, formats=tuple(ns.format))
    plots = [f for f in files if f.suffix == ".png"]
    console.print(f"wrote {len(plots)} plots in {plots[0].parent if plots else '-'}; "
                  + ", ".join(str(f) for f in files if f.suffix != ".png"))
    return 0


# Path flags (not settings: those are checked with the config) and what each must name.
PATH_FLAGS = {"resume": "dir", "experiment": "dir", "output": "new_file", "out": "new_dir", "state": "new_dir",
              "predictions": "file", "references": "file", "config": "file", "space": "file",
              "ensemble_space": "file", "decoding_space": "file"}


def check_paths(ns: argparse.Namespace) -> None:
    """Every path flag given names the right kind of thing (file, directory, somewhere writable)
    before any command starts work."""
    from raysum.storage import path_problems

    given = [(f"--{k}", getattr(ns, k), kind) for k, kind in PATH_FLAGS.items() if getattr(ns, k, None)]
    if getattr(ns, "path_kind", None):
        given.append(("DIR" if ns.path_kind == "dir" else "FILE", ns.path, ns.path_kind))
    problems = [p for flag, value, kind in given for p in path_problems(value, flag, kind)]
    if problems:
        raise ConfigError(problems)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (exit 2, printed by argparse) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    interrupts = Interrupts()
    with interrupts.handlers():
        try:
            for note in end_leftovers():  # the local Ray of a command that was killed (SIGKILL)
                err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
            check_paths(ns)
            return ns.func(ns)
        except Interrupted as exc:  # a search that stopped itself on Ctrl-C, its state saved
            return interrupts.stop(err_console, str(exc))
        except RaysumError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            return exc.exit_code
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (raysum.errors.Terminated)
            return interrupts.stop(err_console)


if __name__ == "__main__":
    sys.exit(main())
