"""The typed schema: every setting raysum knows, with a one-line doc that becomes --help.

Two levels: `ExperimentConfig` holds the global settings (the seed's command-line
flags) and one `ModelSettings` per model under `models`. Global training flags
(epochs, batch_size, ...) are also per-model fields: a global value applies to every
model, a per-model value to one (see `raysum.config.resolve` for the precedence).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in (``None``: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self) -> str:
        low, high = _plain(self.low), _plain(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _plain(number: float | None) -> str:
    if number is None:
        return ""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def doc(text: str, default: Any = None, *, at_least: float | None = None, above: float | None = None,
        at_most: float | None = None, below: float | None = None, **kw) -> Any:
    """A dataclass field whose help text (and, for a number, its range) is stored in its metadata."""
    metadata: dict[str, Any] = {"doc": text}
    if (at_least, above, at_most, below) != (None,) * 4:
        metadata["bounds"] = Bounds(low=above if above is not None else at_least,
                                    high=below if below is not None else at_most,
                                    low_open=above is not None, high_open=below is not None)
    if "default_factory" in kw:
        return field(metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


SEED_MAX = 2**32 - 1  # numpy's seeds


@dataclass
class LoraSettings:
    r: int = doc("LoRA rank", 16, at_least=1)
    alpha: int = doc("LoRA alpha (scaling = alpha / r)", 32, above=0)
    dropout: float = doc("LoRA dropout", 0.05, at_least=0, below=1)
    target_modules: list[str] = doc(
        "module names that get LoRA adapters",
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )


@dataclass
class ResourceSettings:
    num_workers: int = doc("Ray Train workers for one unit (>1 = data parallel)", 1, at_least=1)
    use_gpu: bool = doc("each worker needs a GPU", False)
    cpus_per_worker: float = doc("logical CPUs reserved per worker", 1.0, at_least=0)
    gpus_per_worker: float = doc("GPUs per worker when use_gpu", 1.0, above=0)


@dataclass
class ModelSettings:
    """One model preset, after overrides. Field names shared with the global flags
    (epochs, batch_size, learning_rate, ...) take the global value unless set per model."""

    name: str = doc("preset name (the key under `models`)", "")
    kind: str = doc("seq2seq (encoder-decoder, full fine-tune) or causal (decoder-only, LoRA)", "seq2seq")
    checkpoint: Optional[str] = doc("hub name or local directory loaded with from_pretrained", None)
    from_config: Optional[dict] = doc(
        "build a randomly initialised model instead: {architecture: bart|llama|qwen3, ...config kwargs}; "
        "the tokenizer is trained on the training data", None)
    trust_remote_code: bool = doc("allow code from the checkpoint's repository", False)
    epochs: float = doc("training epochs", 3, above=0, at_most=1000)
    batch_size: int = doc("per-device training batch size", 8, at_least=1)
    gradient_accumulation_steps: int = doc("micro-batches per optimizer step", 1, at_least=1)
    max_tokens_per_batch: Union[int, str] = doc(
        "micro-batches by token budget (0 = off: batch_size rows): length-bucketed batches of at most this many "
        "padded tokens (rows x longest row, encoder + decoder for seq2seq; the sum of lengths when packed), "
        "gradient accumulation recomputed so an optimizer step still sees batch_size x "
        "gradient_accumulation_steps examples on average; auto = sized from free GPU memory (off on CPU)",
        0, at_least=0)
    learning_rate: float = doc("peak learning rate (AdamW)", 5e-5, above=0, at_most=1)
    warmup_ratio: float = doc("fraction of optimizer steps with linear warmup", 0.1, at_least=0, below=1)
    weight_decay: float = doc("AdamW weight decay", 0.01, at_least=0, at_most=1)
    lr_scheduler: str = doc("learning-rate schedule after the warmup: linear, cosine or constant_with_warmup",
                            "linear")
    max_grad_norm: float = doc("gradient clipping: largest gradient norm (0 = no clipping)", 1.0, at_least=0,
                               at_most=1000)
    max_source_length: int = doc("dialogue tokens kept (longer dialogues are truncated)", 512, at_least=8)
    max_target_length: int = doc("summary tokens kept for training", 128, at_least=2)
    num_beams: int = doc("beams at generation", 4, at_least=1)
    max_length: int = doc("maximum generated summary tokens", 100, at_least=1)
    length_penalty: float = doc("beam-search length penalty", 1.0, above=0, at_most=10)
    no_repeat_ngram_size: int = doc("forbid repeating n-grams of this size at generation (0 = off)", 0, at_least=0)
    do_sample: bool = doc("sample the summary (num_beams 1; seeded per decoding setting and dialogue) instead of "
                          "searching for it", False)
    temperature: float = doc("sampling temperature (do_sample only)", 1.0, above=0, at_most=10)
    top_p: float = doc("sampling: keep the smallest set of tokens with this much probability (do_sample only; "
                       "1 = all)", 1.0, above=0, at_most=1)
    decoding_settings: list[dict] = doc(
        "up to 3 more decoding settings (d1..d3), each a partial override of num_beams, length_penalty, "
        "no_repeat_ngram_size, max_length, do_sample, temperature, top_p; OOF and dev are generated once per "
        "setting (a sampled setting may repeat another: each label draws its own samples)", default_factory=list)
    generation_batch_size: int = doc(
        "most dialogues per generation batch; batches are sorted by length and cut by a token budget (on CUDA "
        "from free GPU memory, on CPU this many rows)", 64, at_least=1)
    prompt_template: str = doc(
        "causal LMs: user message of the chat template; {dialogue} is replaced by the dialogue",
        "다음 대화를 요약하세요.\n{dialogue}")
    prompt_strategy: str = doc(
        "causal LMs: zero_shot (prompt_template), few_shot (few_shot_k examples from the unit's own training part, "
        "most similar by TF-IDF, before prompt_template) or instruction_ko (a longer Korean instruction)",
        "zero_shot")
    few_shot_k: int = doc("few_shot: most examples per prompt (they share max_source_length with the dialogue)",
                          2, at_least=1, at_most=8)
    lora: Optional[LoraSettings] = doc("LoRA adapters (causal models); null = full fine-tune", None)
    quantization: Optional[str] = doc("QLoRA base-model quantization: null or nf4 (GPU, bitsandbytes)", None)
    gradient_checkpointing: bool = doc("trade compute for activation memory", False)
    select_best: str = doc(
        "which epoch's weights the unit keeps: last, eval_loss (lowest loss on the unit's held-out part) or "
        "eval_score (highest competition score of its summaries of the held-out part, generated after each epoch)",
        "last")
    early_stopping_patience: int = doc(
        "end training after this many epochs in a row without a better select_best metric (eval_loss when "
        "select_best is last); 0 = train every epoch", 0, at_least=0, at_most=1000)
    checkpoint_every: int = doc(
        "epochs between resume checkpoints (optimizer state included; the last one is written after the timed "
        "training loop); 0 = none: an interrupted unit trains again from the start", 1, at_least=0, at_most=1000)
    dataloader_num_workers: int = doc(
        "processes that collate training batches (0 = in the training process; GPU presets use 2); "
        "batches are pinned on CUDA", 0, at_least=0, at_most=64)
    compile: bool = doc("torch.compile the model for training (TrainingArguments torch_compile; GPU, "
                        "compiling costs time at the start)", False)
    packing: str = doc(
        "causal batches: packed (padding-free rows, attention per example: torch's varlen flash kernel on CUDA, "
        "one sdpa call per example elsewhere), padded (grouped by length), or auto = packed where the varlen "
        "kernel is available and passes a check (CUDA, half precision), padded otherwise", "auto")
    precision: str = doc("auto (bf16 on GPU when supported, fp32 on CPU), bf16, fp16 or fp32", "auto")
    deepspeed: Optional[str] = doc("DeepSpeed preset for multi-GPU units: null, zero2 or zero3", None)
    resources: ResourceSettings = doc("Ray resources of one unit", default_factory=ResourceSettings)


# Per-model fields that a global flag of the same name sets for every model.
SHARED_FIELDS = (
    "epochs", "batch_size", "learning_rate", "gradient_accumulation_steps", "warmup_ratio",
    "num_beams", "max_length", "decoding_settings", "generation_batch_size", "select_best", "early_stopping_patience",
)

LR_SCHEDULERS = ("linear", "cosine", "constant_with_warmup")  # transformers' SchedulerType names
SELECT_BEST = ("last", "eval_loss", "eval_score")  # the epoch a unit keeps
PROMPT_STRATEGIES = ("zero_shot", "few_shot", "instruction_ko")  # raysum.models.prompts renders each
MODES = ("single", "kfold", "multi_model", "optuna", "full")
ONE_MODEL_MODES = ("single", "kfold")
FOLD_MODES = ("kfold", "full", "optuna")  # optuna: trials validate on fold 0


def default_ensemble_strategy(mode: str) -> str:
    """auto where there are out-of-fold candidates to compare by, voting otherwise."""
    return "auto" if mode in FOLD_MODES else "voting"


@dataclass
class ExperimentConfig:
    mode: str = doc("single | kfold | multi_model | optuna | full", "single")
    models: list[str] = doc("model presets (names or preset YAML paths)", default_factory=lambda: ["tiny-bart"])
    epochs: Optional[float] = doc("training epochs (every model)", None)
    batch_size: Optional[int] = doc("per-device batch size (every model)", None)
    learning_rate: Optional[float] = doc("peak learning rate (every model)", None)
    gradient_accumulation_steps: Optional[int] = doc("gradient accumulation steps (every model)", None)
    warmup_ratio: Optional[float] = doc("warmup ratio (every model)", None)
    num_beams: Optional[int] = doc("beams at generation (every model)", None)
    max_length: Optional[int] = doc("maximum generated summary tokens (every model)", None)
    generation_batch_size: Optional[int] = doc("most dialogues per generation batch (every model)", None)
    select_best: Optional[str] = doc("the epoch each unit keeps: last, eval_loss or eval_score (every model)", None)
    early_stopping_patience: Optional[int] = doc(
        "epochs without improvement before a unit stops training, 0 = off (every model)", None)
    decoding_settings: Optional[list[dict]] = doc(
        "up to 3 more decoding settings per unit (every model), e.g. '{num_beams: 1}' '{length_penalty: 1.4}': "
        "OOF and dev generated once per setting for `raysum tune --space search_spaces/decoding.yaml`", None)
    decoding_for_test: bool = doc(
        "generate test with every extra decoding setting too (decoding_settings, --decoding_space), so "
        "`raysum finalize` applies any searched setting without generating; false: OOF and dev only (a large "
        "test set)", True)
    use_augmentation: bool = doc("add augmented training examples (training part of each fold only)", False)
    augmentation_methods: list[str] = doc("augmentation methods", default_factory=lambda: ["back_translation"])
    augmentation_ratio: float = doc("augmented examples per training example", 0.1, above=0, at_most=100)
    augmentation_translators: list[str] = doc(
        "back_translation: ko->en and en->ko MarianMT checkpoints (hub names or local directories)",
        default_factory=lambda: ["Helsinki-NLP/opus-mt-ko-en", "Helsinki-NLP/opus-mt-tc-big-en-ko"])
    k_folds: int = doc("number of folds (kfold / full modes)", 5, at_least=2)
    fold_seed: int = doc("seed of the fold assignment", 42, at_least=0, at_most=SEED_MAX)
    ensemble_strategy: str = doc(
        "how candidates are combined into the submission: auto (the default in the fold modes: the best single "
        "unit, voting, weighted_avg or stacking, whichever has the best cross-fitted out-of-fold score), voting "
        "(the default without folds), weighted_avg or stacking", "voting")
    ensemble_weights: Optional[list[float]] = doc("one weight per model (weighted_avg)", None, at_least=0)
    use_tta: bool = doc("generate for test-time input variants too", False)
    tta_strategies: list[str] = doc("TTA variants", default_factory=lambda: ["paraphrase"])
    tta_num_aug: int = doc("variants per TTA strategy", 1, at_least=1, at_most=100)
    max_train_samples: Optional[int] = doc("seeded random sample of the training data (null = all)", None,
                                           at_least=1)
    max_eval_samples: Optional[int] = doc(
        "generate and score at most this many dialogues of each unit's out-of-fold part and of dev: a sample "
        "seeded by seed, the same for every unit of a fold; test is never capped (null = all)", None, at_least=1)
    save_visualizations: bool = doc(
        "write plots into the experiment's plots/ folder and embed them in report.md "
        "(report.md itself is always written; `raysum report DIR` writes plots for any experiment)", False)
    tracking: list[str] = doc(
        "experiment trackers of each unit: tensorboard (event files in DIR/tensorboard/<model>_<fold>/), "
        "mlflow (needs the mlflow package; DIR/mlruns unless MLFLOW_TRACKING_URI is set), or none",
        default_factory=lambda: ["tensorboard"])
    experiment_name: str = doc("suffix of the experiment directory name", "experiment")
    seed: int = doc("random seed (sampling, initialisation, training order)", 42, at_least=0, at_most=SEED_MAX)
    output_dir: str = doc("where experiment directories are created: a path or file:// URI (on a cluster: "
                          "storage every node mounts)", "outputs")
    storage_path: Optional[str] = doc(
        "Ray Train's storage for the units' runs and reported checkpoints: a path every node reaches or a URI "
        "(s3://, gs://, file://); default: <experiment dir>/ray", None)
    max_failures: int = doc("times Ray Train restarts a unit whose worker or node died; it resumes from its last "
                            "epoch checkpoint", 0, at_least=0)
    train_data: Optional[str] = doc(
        "training data: a csv/jsonl/parquet file (path or URI), a save_to_disk folder or hf://ORG/NAME[:CONFIG]; "
        "default: the bundled Korean sample", None)
    dev_data: Optional[str] = doc("dev data with references (as train_data); default: the bundled Korean sample", None)
    test_data: Optional[str] = doc("test data, references optional (as train_data); default: the bundled Korean "
                                   "sample", None)
    data_split_map: list[str] = doc(
        "the split each of train, dev, test reads from data with splits (hf://, a save_to_disk DatasetDict), "
        "e.g. dev=validation; unnamed ones read the split of their own name", default_factory=list)
    data_columns: list[str] = doc(
        "the data's columns for fname, dialogue, summary, topic where the names differ, e.g. fname=id "
        "summary=summary1,summary2,summary3", default_factory=list)
    allow_sample_data: bool = doc(
        "train models loaded from pretrained weights (checkpoint) although train, dev or test is the bundled "
        "synthetic sample (models built from a config, the tiny-* presets, are always allowed on it)", False)
    ray_address: Optional[str] = doc("attach to a Ray cluster (auto or host:port) instead of starting one "
                                     "(RAY_ADDRESS, as set inside `ray job submit`, does the same)", None)
    num_cpus: Optional[int] = doc("logical CPUs of the local Ray instance (default: enough for the units)", None,
                                  at_least=1)
    ensemble_cpus: Optional[int] = doc(
        "CPUs of the ensemble task (tokenizing, pairwise ROUGE, stacking fit, selection), which Ray places on a "
        "node that has them free; default: every CPU of the cluster's largest node, at most 8", None, at_least=1)


def field_bounds(cls) -> dict[str, Bounds]:
    """Each number's range by field name; the global copies of per-model settings share the model's."""
    out = {f.name: f.metadata["bounds"] for f in fields(cls) if "bounds" in f.metadata}
    if cls is ExperimentConfig:
        model = field_bounds(ModelSettings)
        out.update({k: model[k] for k in SHARED_FIELDS if k in model and k not in out})
    return out


def field_docs(cls) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


def model_settings_from_dict(data: dict) -> ModelSettings:
    """Build `ModelSettings` from a plain (YAML/JSON) mapping; nested blocks become dataclasses."""
    data = dict(data)
    if isinstance(data.get("lora"), dict):
        data["lora"] = LoraSettings(**data["lora"])
    if isinstance(data.get("resources"), dict):
        data["resources"] = ResourceSettings(**data["resources"])
    return ModelSettings(**data)
