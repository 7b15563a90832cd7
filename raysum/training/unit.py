"""One training unit: a model trained on one fold's training part, then generating for
the fold's out-of-fold part, dev and test. Reads top to bottom:

    run_unit: setup (data, model, tokenizer, trainer) -> train -> save -> generate -> finish

Everything goes into `unit_dir`:
    checkpoint/          final weights as safetensors (full model, or the LoRA adapter) + tokenizer
    metrics.jsonl        one row per logging step and per epoch evaluation
    predictions.parquet  split, fname, model, fold, tta, decoding, text, n_tokens, logprob
    unit.json            the summary; status "done" makes a rerun return it without training
    resume/              the last two epoch checkpoints while training (every `checkpoint_every`
                         epochs, the last one written after the timed loop), each sealed once its
                         save finished (only a sealed one is resumed from; deleted when done);
                         with `select_best` eval_loss/eval_score also the best epoch's, which
                         `keep_best_epoch` loads back after training

The HF `Trainer` runs the loop: it brings DeepSpeed, DDP under Ray Train, gradient
accumulation with correctly normalised losses, AMP and exact resume (optimizer, scheduler,
RNG and sampler state), which an own loop would have to re-implement.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from raysum.config.schema import ModelSettings, model_settings_from_dict
from raysum.errors import ConfigError, DataError, RaysumError
from raysum.experiment import (
    UNIT_SELECTION_KEYS, UnitFiles, layout, read_jsonl, read_parquet, settings_hash, write_parquet,
)
from raysum.experiment.candidates import COLUMNS as PREDICTION_COLUMNS
from raysum.generation.decodings import DEFAULT as DEFAULT_DECODING
from raysum.storage import write_text_atomic

Report = Callable[[dict, Optional[str]], None]
# Splits generated once per extra decoding setting, the ones a decoding search scores (their
# seconds: `decodings_generate_s`); an experiment adds test through the unit's `decoding_splits`
# (`decoding_for_test`; its seconds: `decodings_test_generate_s`). TTA variants: d0 only.
DECODING_SPLITS = ("oof", "dev")


@dataclass
class UnitConfig:
    """The typed form of `run_unit`'s config dict."""

    unit_dir: Path
    model: ModelSettings
    train_path: str
    seed: int = 42
    fold: Optional[int] = None
    eval_path: Optional[str] = None
    predict: dict = field(default_factory=dict)
    tokenizer_cache: Optional[str] = None
    # Tokenized examples shared by the units (raysum.training.encoding); None: encode every time.
    encoding_cache: Optional[str] = None
    # Parquet of every distinct (dialogue, summary) the experiment's units train or evaluate on:
    # encoded whole (once per tokenizer and encoding settings), the unit's rows taken from it.
    encoding_rows: Optional[str] = None
    resume: bool = False
    baseline_splits: list = field(default_factory=list)
    node_id: Optional[str] = None
    max_failures: int = 0
    tracking: list = field(default_factory=list)
    tracking_dir: Optional[str] = None
    # {"references": parquet of fname, references; "tokenizer": kiwi|whitespace}: after each
    # epoch's evaluation the eval part is summarised and scored (a Tune search's dev_score).
    epoch_score: Optional[dict] = None
    # The settings that shape this unit (recorded in unit.json; a resume compares them).
    settings: Optional[dict] = None
    # The prediction splits generated once per extra decoding setting (test too: decoding_for_test).
    decoding_splits: list = field(default_factory=lambda: list(DECODING_SPLITS))

    @classmethod
    def from_dict(cls, config: dict) -> "UnitConfig":
        known = {"unit_dir", "model", "train_path", "seed", "fold", "eval_path", "predict", "tokenizer_cache",
                 "encoding_cache", "encoding_rows", "resume", "baseline_splits", "node_id", "max_failures", "tracking", "tracking_dir",
                 "epoch_score", "settings",
                 "decoding_splits"}
        problems = [f"unknown unit setting {k!r}" for k in config if k not in known]
        problems += [f"unit setting {k!r} is required" for k in ("unit_dir", "model", "train_path") if k not in config]
        if problems:
            raise ConfigError(problems)
        values = dict(config)
        values["unit_dir"] = Path(values["unit_dir"])
        model = values["model"]
        values["model"] = model if isinstance(model, ModelSettings) else model_settings_from_dict(model)
        values["predict"] = {k: v for k, v in (values.get("predict") or {}).items() if v}
        return cls(**values)

    @property
    def name(self) -> str:
        return f"{self.model.name}/{layout.fold_label(self.fold)}"

    @property
    def files(self) -> UnitFiles:
        return UnitFiles(self.unit_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.unit_dir / layout.UNIT_CHECKPOINT_DIR

    @property
    def resume_dir(self) -> Path:
        return self.unit_dir / layout.UNIT_RESUME_DIR

    @property
    def metrics_path(self) -> Path:
        return self.files.metrics_file

    @property
    def predictions_path(self) -> Path:
        return self.files.predictions_file

    @property
    def summary_path(self) -> Path:
        return self.files.info_file

    @property
    def baseline_path(self) -> Path:
        return self.files.baseline_file


@dataclass
class UnitRun:
    """What `setup` builds and the later stages use."""

    unit: UnitConfig
    model: object
    tokenizer: object
    trainer: object
    precision: str
    cuda: bool
    train_samples: int
    eval_samples: int
    trainable_params: int
    total_params: int
    batch_plan: object = None  # raysum.training.batching.BatchPlan when batches go by token budget


def run_unit(config: dict, report: Report | None = None) -> dict:
    """Train, save and generate for one unit; returns the summary written to unit.json.
    `report(metrics, checkpoint_dir)` is called once per epoch and once at the end."""
    unit = UnitConfig.from_dict(config)
    finished = read_finished_unit(unit.unit_dir)
    if finished is not None:
        if report is not None:  # its end report (a caller interrupted before it arrived asks again)
            main = int(os.environ.get("RANK", "0")) == 0
            report(_reportable(finished), str(unit.checkpoint_dir) if main else None)
        return finished
    started_at = time.time()
    run = setup(unit, report)
    generate_baseline(run)
    train_stats = train(run)
    started = time.perf_counter()
    save_checkpoint(run)
    train_stats["save_s"] = round(time.perf_counter() - started, 3)
    predictions, timing = generate(run)
    summary = finish(run, train_stats, predictions, timing, started_at)
    if report is not None:
        main = run.trainer.is_world_process_zero()
        report(_reportable(summary), str(unit.checkpoint_dir) if main else None)
    return summary


def read_finished_unit(unit_dir: str | Path) -> dict | None:
    """The summary of a unit whose unit.json says done, else None."""
    files = UnitFiles(unit_dir)
    return files.info() if files.done() else None


# ---------------------------------------------------------------- setup
def setup(unit: UnitConfig, report: Report | None = None) -> UnitRun:
    """Validate, read the data, load the model and tokenizer, encode, build the trainer."""
    import torch
    from transformers import set_seed

    from raysum.models import count_parameters, load_model_and_tokenizer, resolve_precision
    from raysum.training.arguments import deepspeed_loading
    from raysum.training.batching import unit_token_batches
    from raysum.training.collators import prepare_model_for_training
    from raysum.training.validation import epoch_selection_problems, validate_unit_settings

    settings, cuda = unit.model, torch.cuda.is_available()
    problems = validate_unit_settings(settings, has_gpu=cuda)
    if problems:
        raise ConfigError(problems)
    unit.unit_dir.mkdir(parents=True, exist_ok=True)
    set_seed(unit.seed)
    train_frame = read_table(unit.train_path, ("dialogue", "summary"))
    eval_frame = read_table(unit.eval_path, ("dialogue", "summary")) if unit.eval_path else None

    texts = train_frame["dialogue"].tolist() + train_frame["summary"].tolist()
    precision = resolve_precision(settings, cuda=cuda)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    with deepspeed_loading(settings, precision, world_size):  # ZeRO-3: partitioned as from_pretrained loads
        model, tokenizer = load_model_and_tokenizer(settings, train_texts=texts, cache_dir=unit.tokenizer_cache,
                                                    device="cuda" if cuda else "cpu", seed=unit.seed)
    prepare_model_for_training(model)
    shared = read_table(unit.encoding_rows, ("dialogue", "summary")) if unit.encoding_rows else None
    train_set, eval_set = encode_sets(tokenizer, settings, train_frame, eval_frame, unit.encoding_cache,
                                      shot_pool(unit, train_frame), shared)
    problems = epoch_selection_problems(settings, has_eval=eval_set is not None, scores_epochs=bool(unit.epoch_score))
    if problems:
        raise ConfigError(problems)
    batches = unit_token_batches(settings, model, train_set, precision=precision, cuda=cuda, seed=unit.seed,
                                 packed=settings.kind == "causal" and use_packing(settings, cuda),
                                 recorded_budget=_recorded_budget(unit))
    trainer = build_trainer(unit, model, tokenizer, train_set, eval_set, precision, cuda, report, batches=batches)
    return UnitRun(unit, model, tokenizer, trainer, precision, cuda, len(train_set), len(eval_set or []),
                   *count_parameters(model), batch_plan=batches.plan if batches is not None else None)


_POOLS: dict[str, object] = {}


def shot_pool(unit: UnitConfig, train_frame=None):
    """The unit's few-shot pool (None unless its prompts are few-shot): its training part,
    or for a finished unit generating again, the copy saved beside its checkpoint."""
    from raysum.models.shots import ShotPool

    settings = unit.model
    if settings.kind != "causal" or settings.prompt_strategy != "few_shot":
        return None
    saved = unit.checkpoint_dir / layout.SHOT_POOL
    source = str(unit.train_path) if unit.train_path else str(saved)
    if source not in _POOLS:
        if train_frame is None:
            if not unit.train_path and not saved.is_file():
                raise RaysumError(f"{unit.unit_dir}: few-shot prompts pick examples from the unit's training part, "
                                  f"and neither its training file nor {saved} is there; train the unit again")
            train_frame = read_table(source, ("fname", "dialogue", "summary"))
        _POOLS.clear()  # one unit per process at a time: keep only its pool
        _POOLS[source] = ShotPool(train_frame["dialogue"].tolist(), train_frame["summary"].tolist(),
                                  train_frame["fname"].astype(str).tolist())
    return _POOLS[source]


def _recorded_budget(unit: UnitConfig) -> int | None:
    """The token budget the checkpoint a resume continues from was trained with (None
    when there is none): an `auto` budget must not change within a unit's training."""
    if not unit.resume or not unit.resume_dir.is_dir():
        return None
    from raysum.training.callbacks import sealed_record

    checkpoint = last_complete_checkpoint(unit.resume_dir)
    return sealed_record(Path(checkpoint)).get("max_tokens_per_batch") if checkpoint else None


def encode_sets(tokenizer, settings, train_frame, eval_frame, cache_dir: str | None = None,
                pool=None, shared=None) -> tuple[list[dict], list[dict] | None]:
    """Training and eval examples, through the experiment's encoding cache when ``cache_dir``
    is set: taken from the encoding of the ``shared`` table (dialogue, summary: the rows of
    every unit of the experiment) when it is given and holds them, else encoded from the
    unit's own rows. With a few-shot ``pool`` each prompt gets its examples (a training
    dialogue never itself or a row augmented from it); those depend on the unit's whole
    training part, so they are encoded without the cache."""
    from raysum.models import encode_examples
    from raysum.training.encoding import encode_cached, encode_from_table

    frames = [train_frame] + ([eval_frame] if eval_frame is not None and len(eval_frame) else [])
    parts = [(frame["dialogue"].tolist(), frame["summary"].tolist()) for frame in frames]
    if pool is not None:
        own = [train_frame["fname"].astype(str).tolist(), None]  # training rows never get themselves as shots
        sets = [encode_examples(tokenizer, settings, dialogues, summaries,
                                pool.pick(dialogues, settings.few_shot_k, fnames))
                for (dialogues, summaries), fnames in zip(parts, own)]
    else:
        sets = None
        if shared is not None and cache_dir is not None:
            table = (shared["dialogue"].tolist(), shared["summary"].tolist())
            sets = encode_from_table(tokenizer, settings, table, parts, cache_dir)
        if sets is None:
            sets = [encode_cached(tokenizer, settings, dialogues, summaries, cache_dir) for dialogues, summaries in parts]
    if len(sets) == 1:
        return sets[0], None
    train_set, eval_set = sets
    eval_set.sort(key=lambda example: len(example["input_ids"]))  # sequential eval batches of similar length
    return train_set, eval_set


def build_trainer(unit: UnitConfig, model, tokenizer, train_set, eval_set, precision: str, cuda: bool,
                  report: Report | None, batches=None):
    from transformers.trainer_callback import PrinterCallback

    from raysum.training.arguments import build_training_arguments
    from raysum.training.best_epoch import EarlyStop, KeepBest
    from raysum.training.callbacks import CheckpointEvery, CheckpointSeal, EpochReport, EpochScore, MetricsLog
    from raysum.training.collators import make_collator
    from raysum.training.tracking import tracking_callbacks
    from raysum.training.trainer import UnitTrainer

    settings = unit.model
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    args = build_training_arguments(settings, unit.resume_dir, num_examples=len(train_set), has_eval=eval_set is not None,
                                    precision=precision, cuda=cuda, seed=unit.seed, world_size=world_size,
                                    run_name=unit.name, batch_plan=batches.plan if batches is not None else None)
    plan = batches.plan if batches is not None else None  # token-budget micro-batches (raysum.training.batching)
    per_step = (plan.examples_per_step if plan is not None
                else settings.batch_size * settings.gradient_accumulation_steps * world_size)
    callbacks = [MetricsLog(unit.metrics_path, per_step), CheckpointEvery(settings.checkpoint_every),
                 CheckpointSeal({"max_tokens_per_batch": plan.max_tokens_per_batch} if plan is not None else None)]
    callbacks += tracking_callbacks(unit.tracking, unit.tracking_dir, unit.name)
    if unit.epoch_score and eval_set is not None:
        callbacks.append(EpochScore(lambda model: score_eval_part(model, tokenizer, unit)))
    if args.metric_for_best_model and settings.select_best != "last":  # after EpochScore: they read its eval_score
        callbacks.append(KeepBest())
    if args.metric_for_best_model and settings.early_stopping_patience:
        callbacks.append(EarlyStop(early_stopping_patience=settings.early_stopping_patience))
    if report is not None:
        callbacks.append(EpochReport(report, has_eval=eval_set is not None))
    packed = use_packing(settings, cuda)
    if packed and settings.kind == "causal":
        from raysum.training.attention import use_varlen_attention

        use_varlen_attention(model)  # packed rows attend per example, no dense mask; generation falls back to sdpa
    trainer = UnitTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                          data_collator=make_collator(settings, tokenizer, model,
                                                      pad_to_multiple_of=8 if cuda else None, packed=packed),
                          processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # metrics.jsonl has every logged value
    trainer.token_batches = batches  # UnitTrainer.get_train_dataloader: token-budget micro-batches
    return trainer


def use_packing(settings, cuda: bool) -> bool:
    """Packed (padding-free) causal batches when asked (`packed`; off CUDA the attention
    runs once per example, correct but slower) or, for `auto`, where torch's varlen flash
    kernel is there and passed its check, in half precision; padded batches otherwise."""
    if settings.packing != "auto":
        return settings.packing == "packed"
    if not cuda:
        return False
    from raysum.training.attention import varlen_available

    return settings.precision != "fp32" and varlen_available()  # auto precision on CUDA is bf16 or fp16


def read_table(path: str, columns: tuple[str, ...]):
    frame = read_parquet(Path(path))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError([f"missing column(s) {', '.join(missing)}"], path=str(path))
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].fillna("").astype(str)
    return frame


# ---------------------------------------------------------------- baseline
def generate_baseline(run: UnitRun) -> None:
    """Summaries of the model before training (`baseline_splits`, e.g. dev) into
    baseline.parquet: the "untrained" score each trained unit is compared with."""
    unit, files = run.unit, run.unit.files
    if not unit.baseline_splits or not run.trainer.is_world_process_zero() or files.baseline() is not None:
        return
    for note in files.notes:  # a damaged baseline.parquet: made again here
        print(f"note: {note}; generating it again", flush=True)
    with _generating(run.trainer.model) as model:
        frame, _ = _predict_splits(model, run.tokenizer, unit, {s: unit.predict[s] for s in unit.baseline_splits
                                                                 if s in unit.predict})
    unit.files.write_baseline(frame)


def score_eval_part(model, tokenizer, unit: UnitConfig) -> float:
    """competition_score of the model's summaries of the eval part (mid-training, main process)."""
    from raysum.metrics import score

    refs = read_parquet(Path(unit.epoch_score["references"]), ["fname", "references"])
    by_name = {str(f): list(r) for f, r in zip(refs["fname"], refs["references"]) if len(r)}
    with _generating(model) as model:
        frame, _ = _predict_splits(model, tokenizer, unit, {"eval": unit.eval_path})
    frame = frame[frame["fname"].isin(by_name)]
    return score(frame["text"].tolist(), [by_name[f] for f in frame["fname"]],
                 tokenizer=unit.epoch_score.get("tokenizer", "kiwi"))["competition_score"]


@contextlib.contextmanager
def _generating(model):
    """The training model, switched to generation (eval mode, KV cache) and back."""
    use_cache = model.config.use_cache
    model.config.use_cache = True
    model.eval()
    try:
        yield model
    finally:
        model.config.use_cache = use_cache
        model.train()


# ---------------------------------------------------------------- train
def train(run: UnitRun) -> dict:
    """Run the trainer, continuing from the last intermediate checkpoint when resuming;
    `train_s` times the Trainer's loop alone, the last resume checkpoint is written after it."""
    from raysum.training.best_epoch import keep_best_epoch, stopped_early

    unit = run.unit
    checkpoint = None
    if unit.resume and unit.resume_dir.is_dir():
        checkpoint = last_complete_checkpoint(unit.resume_dir, remove_others=run.trainer.is_world_process_zero())
    if run.trainer.is_world_process_zero():
        if checkpoint is None:
            shutil.rmtree(unit.resume_dir, ignore_errors=True)
            unit.metrics_path.unlink(missing_ok=True)
            if unit.tracking_dir:  # events of an attempt that left no checkpoint
                shutil.rmtree(unit.tracking_dir, ignore_errors=True)
        else:
            _drop_metrics_after(unit.metrics_path, _checkpoint_step(checkpoint))
    if checkpoint is not None and stopped_early(checkpoint):
        # trained until early stopping ended it: the Trainer restores that state and trains no further step
        run.trainer.args.max_steps = _checkpoint_step(checkpoint)
    started = time.perf_counter()
    result = run.trainer.train(resume_from_checkpoint=checkpoint)
    train_s = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    save_last_resume_checkpoint(run)
    resume_checkpoint_s = round(time.perf_counter() - started, 3)
    return {"train_s": train_s, "steps": result.global_step, "train_loss_mean": result.training_loss,
            "resumed_from_step": _checkpoint_step(checkpoint), "resume_checkpoint_s": resume_checkpoint_s,
            # the weights select_best chose (an earlier epoch's loaded back), after the last resume checkpoint
            **keep_best_epoch(run.trainer, unit.model.select_best, unit.resume_dir, unit.name)}


def save_last_resume_checkpoint(run: UnitRun) -> None:
    """The resume checkpoint of the trained state, written after the timed loop (CheckpointEvery
    keeps the Trainer from writing it inside): a unit stopped while it saves or generates
    resumes here instead of training again. None with checkpoint_every 0, or when the
    unit resumed from this very step. The Trainer's own save and seal, called as its loop
    calls them at an epoch end."""
    trainer, unit = run.trainer, run.unit
    step = trainer.state.global_step
    if not unit.model.checkpoint_every or _checkpoint_step(last_complete_checkpoint(unit.resume_dir)) == step:
        return
    trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    trainer.control = trainer.callback_handler.on_save(trainer.args, trainer.state, trainer.control)


def last_complete_checkpoint(resume_dir: Path, remove_others: bool = False) -> str | None:
    """The newest epoch checkpoint whose save finished, i.e. that CheckpointSeal sealed after
    the Trainer's save returned. A unit killed while saving leaves a directory without the
    seal, possibly with a torn trainer_state.json (the Trainer writes it in place): removed
    here by the main process, since resuming from it fails and the Trainer's rotation
    would count it."""
    from raysum.training.callbacks import is_sealed

    checkpoints = [p for p in resume_dir.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    complete = [p for p in checkpoints if is_sealed(p)]
    if remove_others:
        for partial in set(checkpoints) - set(complete):
            shutil.rmtree(partial, ignore_errors=True)
    return str(max(complete, key=lambda p: _checkpoint_step(str(p)))) if complete else None


def _checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0


def _drop_metrics_after(path: Path, step: int) -> None:
    """Rows logged after the checkpoint we resume from are logged again."""
    if not path.is_file():
        return
    notes: list[str] = []
    rows = [row for row in read_jsonl(path, notes) if isinstance(row.get("step"), (int, float)) and row["step"] <= step]
    for note in notes:
        print(f"note: {note}", flush=True)
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


# ---------------------------------------------------------------- save
def save_checkpoint(run: UnitRun) -> None:
    """Final weights as safetensors and the tokenizer: the LoRA adapter alone for models
    loaded from a checkpoint (the base is that checkpoint), the full model otherwise
    (a tiny preset's random base cannot be downloaded again, so its adapters are merged)."""
    trainer, settings = run.trainer, run.unit.model
    # ZeRO-3 holds a shard of every parameter per rank: gather them (a collective call).
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if trainer.is_deepspeed_enabled else None
    if trainer.is_world_process_zero():
        target = run.unit.checkpoint_dir
        shutil.rmtree(target, ignore_errors=True)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if settings.lora is not None and settings.from_config:
            model, state_dict = copy.deepcopy(model).merge_and_unload(), None
        model.save_pretrained(str(target), state_dict=state_dict)
        run.tokenizer.save_pretrained(str(target))
        if shot_pool(run.unit) is not None:  # what few-shot prompts pick from when the unit generates again
            write_parquet(target / layout.SHOT_POOL,
                          read_table(run.unit.train_path, ("fname", "dialogue", "summary"))[["fname", "dialogue",
                                                                                             "summary"]])
    trainer.accelerator.wait_for_everyone()


# ---------------------------------------------------------------- generate
def generate(run: UnitRun):
    """Summaries for every prediction split with the model's own settings (d0), then the
    unit's `decoding_splits` (OOF and dev; test too with decoding_for_test) once per extra
    decoding setting (main process only): the table and the seconds each decoding took,
    OOF + dev apart from test."""
    import pandas as pd

    from raysum.generation.decodings import decoding_table, with_decoding

    if not run.trainer.is_world_process_zero():
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS)), {"generate_s": 0.0, "decodings_s": {},
                                                                "decodings_test_s": {}}
    unit, engine = run.unit, _model_for_generation(run)  # one engine for every pass below
    frame, generate_s = _predict_splits(engine, run.tokenizer, unit, unit.predict)
    frames, extra_s, test_s = [frame], {}, {}
    splits = {k: v for k, v in unit.predict.items() if k in unit.decoding_splits}
    scored = {k: v for k, v in splits.items() if k in DECODING_SPLITS}
    others = {k: v for k, v in splits.items() if k not in DECODING_SPLITS}
    for name, decoding in decoding_table(unit.model).items():
        if name == DEFAULT_DECODING or not splits:
            continue
        settings = with_decoding(unit.model, decoding)
        for part, seconds in ((scored, extra_s), (others, test_s)):
            if part:
                frame, seconds[name] = _predict_splits(engine, run.tokenizer, unit, part, name, settings)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True), {"generate_s": generate_s, "decodings_s": extra_s,
                                                  "decodings_test_s": test_s}


def _predict_splits(engine, tokenizer, unit: UnitConfig, splits: dict[str, str], decoding: str = DEFAULT_DECODING,
                    settings: ModelSettings | None = None):
    """Generate for each split's parquet (fname, dialogue); one table in PREDICTION_COLUMNS.
    A key "dev|paraphrase_1" is the dev split's TTA variant paraphrase_1 (plain "dev": tta none).
    ``settings`` (default: the unit's model) decide the decoding labelled ``decoding``.
    ``engine``: the unit's GenerationEngine, or a model that keeps training (an engine
    borrows it for this pass: dynamic KV cache, nothing merged or cast)."""
    import pandas as pd

    from raysum.generation import GenerationEngine
    from raysum.generation.decodings import sampling_seed

    if not isinstance(engine, GenerationEngine):
        engine = GenerationEngine(engine, tokenizer, cache="dynamic")
    settings, frames = settings or unit.model, []
    seed = sampling_seed(unit.seed, decoding)
    started = time.perf_counter()
    for key, path in splits.items():
        split, _, tta = key.partition("|")
        table = read_table(path, ("fname", "dialogue"))
        pool = shot_pool(unit)
        shots = None if pool is None else pool.pick(table["dialogue"].tolist(), settings.few_shot_k)
        outputs = engine.summaries(settings, table["dialogue"].tolist(), seed=seed, shots=shots)
        frame = pd.DataFrame(outputs, columns=["text", "n_tokens", "logprob"])
        frame.insert(0, "split", split)
        frame.insert(1, "fname", table["fname"].tolist())
        frame.insert(2, "model", settings.name)
        frame.insert(3, "fold", unit.fold)
        frame.insert(4, "tta", tta or "none")
        frame.insert(5, "decoding", decoding)
        frames.append(frame)
    generate_s = round(time.perf_counter() - started, 3)
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    predictions["fold"] = predictions["fold"].astype("Int64")
    return predictions, generate_s


def predict_unit(config: dict) -> str:
    """A finished unit generates for a new file (no training): config has unit_dir, model,
    fold, output_path, and either `predict` (key "split" or "split|tta" -> parquet with
    fname, dialogue) or input_path + split. With `decodings` ({label: decoding settings},
    labels of the model's decoding table) it generates with each of those settings, each
    labelled and seeded as the unit's own pass was, instead of the model's own (d0).
    Returns output_path."""
    import torch

    from raysum.generation import GenerationEngine, prepare_model
    from raysum.models import load_trained_model, resolve_precision, torch_dtype

    settings = config["model"]
    settings = settings if isinstance(settings, ModelSettings) else model_settings_from_dict(settings)
    finished = read_finished_unit(config["unit_dir"])
    if finished is None:
        raise RaysumError(f"unit {config['unit_dir']} is not finished: no checkpoint to predict with")
    # the unit's seed: a sampled setting draws the samples it drew in training
    unit = UnitConfig(unit_dir=Path(config["unit_dir"]), model=settings, train_path="", fold=config.get("fold"),
                      seed=finished.get("seed", 42))
    cuda = torch.cuda.is_available()
    model, tokenizer = load_trained_model(settings, unit.checkpoint_dir, device="cuda" if cuda else "cpu")
    precision = resolve_precision(settings, cuda=cuda)
    half = cuda and settings.quantization is None and precision != "fp32"
    model = prepare_model(model, dtype=torch_dtype(precision) if half else None,
                          merge_lora=settings.quantization is None)
    splits = config.get("predict") or {config.get("split", "test"): config["input_path"]}
    engine = GenerationEngine(model, tokenizer)
    decodings = config.get("decodings")
    if decodings:
        import pandas as pd

        from raysum.generation.decodings import with_decoding

        frame = pd.concat([_predict_splits(engine, tokenizer, unit, splits, label, with_decoding(settings, decoding))[0]
                           for label, decoding in decodings.items()], ignore_index=True)
    else:
        frame, _ = _predict_splits(engine, tokenizer, unit, splits)
    write_parquet(Path(config["output_path"]), frame)
    return config["output_path"]


def _model_for_generation(run: UnitRun):
    """The unit's generation engine over the trained model, prepared once: optimizer state
    freed, LoRA merged (not into 4-bit weights), half precision on GPU, eval mode, KV cache on."""
    import torch

    from raysum.generation import GenerationEngine, prepare_model
    from raysum.models import load_trained_model, torch_dtype

    trainer, settings = run.trainer, run.unit.model
    trainer.optimizer = trainer.lr_scheduler = None
    if settings.deepspeed == "zero3":
        with _zero3_off(trainer.args):  # whole weights for one process's generation, not partitioned ones
            model, _ = load_trained_model(settings, run.unit.checkpoint_dir, device="cuda")
    else:
        model = trainer.accelerator.unwrap_model(trainer.model)
    half = run.cuda and settings.quantization is None and run.precision != "fp32"
    model = prepare_model(model, dtype=torch_dtype(run.precision) if half else None,
                          merge_lora=settings.lora is not None and settings.quantization is None)
    if run.cuda:  # the optimizer state and the fp32 weights go back to the GPU for the KV cache
        gc.collect()
        torch.cuda.empty_cache()
    return GenerationEngine(model, run.tokenizer)


@contextlib.contextmanager
def _zero3_off(args):
    """transformers loads every model with `deepspeed.zero.Init` (each rank a shard) while a
    ZeRO-3 config is registered, and the Trainer's arguments `args` keep theirs registered:
    generation on the main process alone needs whole weights, so the registration is lifted
    while it loads, and put back after."""
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        registered = getattr(args, "hf_deepspeed_config", None)
        if registered is not None:
            set_hf_deepspeed_config(registered)


# ---------------------------------------------------------------- finish
def finish(run: UnitRun, train_stats: dict, predictions, timing: dict, started_at: float) -> dict:
    """predictions.parquet and unit.json (written last: a unit is done once it exists)."""
    import torch

    from raysum.generation.decodings import decoding_table

    unit, history = run.unit, run.trainer.state.log_history
    losses = [row["loss"] for row in history if "loss" in row]
    eval_losses = [row["eval_loss"] for row in history if "eval_loss" in row]
    eval_scores = [row["eval_score"] for row in history if "eval_score" in row]
    summary = {
        "status": "done",
        "model": unit.model.name,
        "fold": unit.fold,
        "seed": unit.seed,
        "device": torch.cuda.get_device_name() if run.cuda else "cpu",
        "precision": run.precision,
        "train_s": train_stats["train_s"],
        "save_s": train_stats["save_s"],  # the final weights (checkpoint/), outside train_s
        "resume_checkpoint_s": train_stats["resume_checkpoint_s"],  # the last resume checkpoint, outside train_s
        "generate_s": timing["generate_s"],
        "decodings": decoding_table(unit.model),
        "decodings_generate_s": timing["decodings_s"],  # OOF + dev per extra setting
        "decodings_test_generate_s": timing.get("decodings_test_s", {}),  # test per extra setting
        "train_samples": run.train_samples,
        "eval_samples": run.eval_samples,
        "epochs": unit.model.epochs,
        **{k: train_stats[k] for k in UNIT_SELECTION_KEYS},  # written by keep_best_epoch
        "steps": train_stats["steps"],
        "resumed_from_step": train_stats["resumed_from_step"],
        **_batching_record(run),
        "train_loss": losses[-1] if losses else None,
        "train_loss_mean": train_stats["train_loss_mean"],
        # the kept epoch's evaluation (the last one's with select_best last)
        "eval_loss": train_stats.get("eval_loss", eval_losses[-1] if eval_losses else None),
        **({"eval_score": train_stats.get("eval_score", eval_scores[-1])} if eval_scores else {}),
        "trainable_params": run.trainable_params,
        "total_params": run.total_params,
        "predictions": {split: int(n) for split, n in predictions.groupby("split", sort=False).size().items()},
        "checkpoint": layout.UNIT_CHECKPOINT_DIR,
        "node_id": unit.node_id,
        **({"settings": unit.settings, "settings_hash": settings_hash(unit.settings)} if unit.settings else {}),
        "started_at": started_at,
        "finished_at": time.time(),
    }
    if run.trainer.is_world_process_zero():
        unit.files.write_predictions(predictions)
        unit.files.write_info(summary)
        shutil.rmtree(unit.resume_dir, ignore_errors=True)
    return summary


def _batching_record(run: UnitRun) -> dict:
    """The summary's `batching`: what a token budget made of the batches, or that `auto` was off."""
    if run.batch_plan is not None:
        return {"batching": run.batch_plan.record()}
    if run.unit.model.max_tokens_per_batch == "auto":
        return {"batching": {"max_tokens_per_batch": 0, "source": "auto (off without CUDA)"}}
    return {}


def _reportable(summary: dict) -> dict:
    """Numbers for Ray's report (no key named `done`: Tune would end the trial)."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "done"}
