"""Micro-batches by token budget (`max_tokens_per_batch`), and the budget `auto` derives
from free GPU memory.

A batch costs the tokens the model computes on: rows x longest row when padded (encoder
plus decoder tokens for seq2seq), the sum of the lengths when packed. Lengths are
rounded up to multiples of 8, what the collator pads to on CUDA: there a batch's padded
size is exactly what the budget bounds, on CPU at most that.

The plan is fixed for the whole run (every epoch has the same batch sizes, so a resume
lands on the same step):

1. The examples, ordered by rounded length, are cut greedily into batches within the
   budget and a number of rows (at most batch_size x gradient_accumulation_steps, one
   optimizer step's examples; see 3). Only rounded lengths decide the cuts, so the sizes
   hold whichever examples of equal rounded length fill a batch.
2. With several workers, the largest batches are halved until each worker gets as many.
3. Gradient accumulation g is recomputed: the smallest g for which batches of at most
   ceil(batch_size x gradient_accumulation_steps / g) rows give an optimizer step within 10%
   of the configured effective batch on average over an epoch (else the closest). Single
   steps vary (a step of long examples holds fewer, one of short examples more); the
   number used and the mean examples per step are recorded in unit.json (`batching`) and
   metrics.jsonl (`effective_batch_size`).

Each epoch (seeded by the unit's seed and the epoch), examples of equal rounded length
trade places, the batches are shuffled across the length buckets, and worker r takes
batches r, r + W, ...: every example is used exactly once per epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from raysum.errors import ConfigError

BUCKET_TOKENS = 8  # lengths are rounded up to this (the collator's pad_to_multiple_of on CUDA)

# `auto`: bytes of activations per token, counted per layer from the model's shapes (see
# `activation_bytes_per_token`), times CALIBRATION = measured peak / counted bytes. Measured
# with plain transformers + peft on an H200 (bf16, batch 8 x 512 tokens, sdpa; KoBART batch
# 50 x (512 + 100)): Llama-3.2-3B LoRA 8.0 MB/token, Qwen3-4B LoRA 11.3 MB/token, KoBART full
# fine-tune 0.29 MB/token; the formula below is within 5% of each.
CALIBRATION = 1.2
HEADROOM = 0.9  # of the usable memory: allocator fragmentation, CUDA workspaces, evaluation batches
OPTIMIZER_BYTES = 12  # per trainable parameter, allocated at the first step: fp32 gradient + AdamW's two moments
LOGIT_BYTES = 8  # per vocabulary entry and target token, besides the logits: fp32 copy for the loss + its gradient


def round_up(length: int) -> int:
    return -(-length // BUCKET_TOKENS) * BUCKET_TOKENS


def example_lengths(example: dict, kind: str) -> tuple[int, ...]:
    """The padded fields of one encoded example: (input_ids,) for causal LMs (labels share
    its width), (input_ids, labels) for seq2seq."""
    if kind == "seq2seq":
        return len(example["input_ids"]), len(example["labels"])
    return (len(example["input_ids"]),)


def batch_tokens(lengths: list[tuple[int, ...]], packed: bool = False) -> int:
    """Tokens of one batch: Σ lengths when packed, else rows x longest, field by field."""
    if packed:
        return sum(sum(fields) for fields in lengths)
    return len(lengths) * sum(max(column) for column in zip(*lengths)) if lengths else 0


@dataclass(frozen=True)
class BatchPlan:
    """What a token budget made of the configured batches (recorded in unit.json)."""

    max_tokens_per_batch: int
    gradient_accumulation_steps: int
    micro_batches: int  # per epoch, all workers together
    examples_per_step: float  # mean, all workers together
    largest_batch_rows: int
    source: str  # "setting", "auto" or "auto (resumed)"

    def record(self) -> dict:
        return asdict(self)


class TokenBudgetBatchSampler:
    """The batch sampler of a plan: a list of example indices per micro-batch (this worker's)."""

    def __init__(self, lengths: list[tuple[int, ...]], sizes: list[int], seed: int, world_size: int = 1,
                 rank: int = 0):
        self.keys = [tuple(round_up(x) for x in fields) for fields in lengths]
        self.sizes = sizes
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before each epoch. Resumes start at an epoch boundary (epoch
        checkpoints), so the Trainer never skips into an epoch whose number this misses."""
        self.epoch = epoch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All workers' batches of one epoch, in the order they are dealt."""
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        ties = rng.random(len(self.keys))
        order = sorted(range(len(self.keys)), key=lambda i: (self.keys[i], ties[i]))
        batches, start = [], 0
        for size in self.sizes:
            batches.append(order[start:start + size])
            start += size
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        yield from self.epoch_batches(self.epoch)[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.sizes) // self.world_size


def plan_token_batches(lengths: list[tuple[int, ...]], *, max_tokens: int, batch_size: int,
                       gradient_accumulation_steps: int, packed: bool = False, seed: int = 0,
                       world_size: int = 1, rank: int = 0, source: str = "setting"):
    """`(sampler, plan)` for examples of these `lengths` (see the module doc)."""
    keys = sorted(tuple(round_up(x) for x in fields) for fields in lengths)
    longest = max(batch_tokens([key], packed) for key in keys)
    if longest > max_tokens:
        raise ConfigError(f"max_tokens_per_batch {max_tokens} ({source}) is below the longest training example: "
                          f"{longest} tokens (lengths rounded up to multiples of {BUCKET_TOKENS}); raise it, or "
                          "lower max_source_length / max_target_length")
    if len(keys) < world_size:
        raise ConfigError(f"{len(keys)} training examples cannot give each of {world_size} workers a batch")
    accumulation, sizes = _accumulation(keys, max_tokens, batch_size * gradient_accumulation_steps, packed,
                                        world_size)
    plan = BatchPlan(max_tokens_per_batch=max_tokens, gradient_accumulation_steps=accumulation,
                     micro_batches=len(sizes),
                     examples_per_step=round(len(keys) / len(sizes) * accumulation * world_size, 3),
                     largest_batch_rows=max(sizes), source=source)
    sampler = TokenBudgetBatchSampler(lengths, sizes, seed, world_size, rank)
    sampler.plan = plan
    return sampler, plan


def _accumulation(keys: list[tuple[int, ...]], max_tokens: int, per_step: int, packed: bool,
                  world_size: int) -> tuple[int, list[int]]:
    """The gradient accumulation and batch sizes: the fewest micro-batches per step (the
    largest micro-batches) whose mean examples per step is within 10% of `per_step`, else
    the closest. With g micro-batches per step a batch holds at most ceil(per_step / g) rows."""
    def option(steps: int):
        sizes = _equal_shares(_cut(keys, max_tokens, -(-per_step // steps), packed), world_size)
        return abs(len(keys) / len(sizes) * steps - per_step) / per_step, steps, sizes

    first = option(1)
    guess = max(1, round(per_step * len(first[2]) / len(keys)))
    options = [first] + [option(g) for g in range(max(2, guess - 1), min(per_step, guess + 3) + 1)]
    close = [o for o in options if o[0] <= 0.1]
    _, steps, sizes = min(close, key=lambda o: o[1]) if close else min(options, key=lambda o: (o[0], o[1]))
    return steps, sizes


def _cut(keys: list[tuple[int, ...]], max_tokens: int, max_rows: int, packed: bool) -> list[int]:
    """Sizes of the greedy batches of the sorted `keys`: each within the budget and `max_rows`."""
    sizes, rows, widths, total = [], 0, [0] * len(keys[0]), 0
    for key in keys:
        grown = [max(w, k) for w, k in zip(widths, key)]
        cost = total + sum(key) if packed else (rows + 1) * sum(grown)
        if rows and (rows == max_rows or cost > max_tokens):
            sizes.append(rows)
            rows, grown, total = 0, list(key), 0
        rows, widths, total = rows + 1, grown, total + sum(key)
    return sizes + [rows]


def _equal_shares(sizes: list[int], world_size: int) -> list[int]:
    """Halve the largest batches until the batches split evenly across the workers (a part
    of a batch within the budget is within it too)."""
    sizes = list(sizes)
    while len(sizes) % world_size:
        largest = max(range(len(sizes)), key=lambda i: sizes[i])
        half = sizes[largest] // 2
        sizes[largest:largest + 1] = [sizes[largest] - half, half]
    return sizes


def train_dataloader(trainer, sampler: TokenBudgetBatchSampler):
    """The Trainer's training DataLoader with `sampler` as its batch sampler (what
    `Trainer._get_dataloader` builds, with `batch_sampler` instead of batch_size/sampler;
    the unit keeps every column, remove_unused_columns=False).
    The sampler deals batches to the workers itself, so accelerate's per-process shard
    wrapper is made a pass-through, as transformers does for its BatchRebalanceSampler."""
    from functools import partial

    from torch.utils.data import DataLoader
    from transformers.trainer_utils import seed_worker

    args = trainer.args
    params = {"batch_sampler": sampler, "collate_fn": trainer.data_collator,
              "num_workers": args.dataloader_num_workers, "pin_memory": args.dataloader_pin_memory,
              "persistent_workers": args.dataloader_persistent_workers,
              "worker_init_fn": partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index)}
    if args.dataloader_num_workers:
        params["prefetch_factor"] = args.dataloader_prefetch_factor
    loader = trainer.accelerator.prepare(DataLoader(trainer.train_dataset, **params))
    shard = getattr(loader, "batch_sampler", None)
    if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
        shard.num_processes, shard.process_index = 1, 0
    return loader


# ---------------------------------------------------------------- auto: sized from free GPU memory
def activation_bytes_per_token(config, kind: str, precision: str, gradient_checkpointing: bool = False,
                               mean_lengths: tuple[float, ...] | None = None) -> float:
    """Activation bytes one token of a batch keeps for the backward pass, x CALIBRATION.

    Elements saved per token and layer, counted from the model's shapes (h hidden, a
    attention width = heads x head_dim, kv key/value width, i MLP width):
      decoder-only layer  11h (norm and projection inputs, residual, LoRA dropout copies)
                          + 7a + 4kv (q, k, v, attention output, o_proj input)
                          + 5i (gate, up, activation, product, down_proj input)
      BART encoder layer  11h + 2i;  decoder layer 18h + 2i (cross-attention too), plus 2h per
                          decoder layer for each source token (its cross-attention keys/values)
    times the activation dtype's bytes (2 in bf16/fp16, 4 in fp32); with gradient
    checkpointing only each layer's input (h) is kept, plus one layer recomputed at a time.
    The output layer adds vocab x (dtype bytes + 8) per target token (logits, their fp32
    copy for the loss, its gradient). A seq2seq budget counts source and target tokens: the
    two costs are weighted by the training data's mean lengths `mean_lengths` (source, target).
    """
    width = 4 if precision == "fp32" else 2
    logits = config.vocab_size * (width + LOGIT_BYTES)
    if kind == "seq2seq":
        h = config.d_model
        encoder, decoder = 11 * h + 2 * config.encoder_ffn_dim, 18 * h + 2 * config.decoder_ffn_dim
        source = _layers(encoder, config.encoder_layers, h, gradient_checkpointing) + 2 * h * config.decoder_layers
        target = _layers(decoder, config.decoder_layers, h, gradient_checkpointing)
        source_length, target_length = mean_lengths or (1.0, 1.0)
        per_token = (source_length * source * width + target_length * (target * width + logits)) / (
            source_length + target_length)
        return per_token * CALIBRATION
    h, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    attention, kv = heads * head_dim, (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    layer = 11 * h + 7 * attention + 4 * kv + 5 * config.intermediate_size
    return (_layers(layer, config.num_hidden_layers, h, gradient_checkpointing) * width + logits) * CALIBRATION


def _layers(per_layer: int, layers: int, hidden: int, checkpointing: bool) -> int:
    return layers * hidden + per_layer if checkpointing else layers * per_layer


def auto_max_tokens(usable_bytes: float, bytes_per_token: float, trainable_params: int) -> int:
    """The budget `auto` gives: (HEADROOM x usable memory - optimizer state still to come)
    / activation bytes per token, rounded down to a multiple of 64 (0 when nothing is left)."""
    left = usable_bytes * HEADROOM - trainable_params * OPTIMIZER_BYTES
    return max(0, int(left / bytes_per_token) // 64 * 64)


def usable_gpu_memory(gpu_share: float = 1.0) -> int:
    """Bytes this process may still fill on its GPU: what is free, and with a fraction of a GPU
    per worker (units sharing a GPU) no more than that share of it beyond what it holds."""
    import torch

    free, total = torch.cuda.mem_get_info()
    if gpu_share >= 1:
        return int(free)
    return int(max(0, min(free, total * gpu_share - torch.cuda.memory_reserved())))


def unit_token_batches(settings, model, train_set: list[dict], *, precision: str, cuda: bool, packed: bool,
                       seed: int, recorded_budget: int | None = None):
    """The unit's token-budget batch sampler (its `.plan` says what it made of the batches),
    or None when `max_tokens_per_batch` is off, or `auto` on a machine without CUDA (a note
    says so). `auto` on a resumed unit reuses `recorded_budget`, the budget its checkpoint
    was trained with, so the resumed epochs have the same batches and steps."""
    import os

    budget, source = settings.max_tokens_per_batch, "setting"
    if budget == "auto":
        if recorded_budget is not None:
            budget, source = recorded_budget, "auto (resumed)"
        elif not cuda:
            print(f"note: {settings.name}: max_tokens_per_batch auto sizes batches from free GPU memory; without "
                  f"CUDA it is off (batches of batch_size {settings.batch_size} rows)", flush=True)
            return None
        else:
            budget, source = _auto_budget(settings, model, train_set, precision), "auto"
    if source == "setting" and not budget:
        return None  # an auto budget of 0 (no memory left) is refused by the plan with the longest example
    world_size, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    sampler, _ = plan_token_batches(
        [example_lengths(e, settings.kind) for e in train_set], max_tokens=int(budget), batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps, packed=packed, seed=seed,
        world_size=world_size, rank=rank, source=source)
    return sampler


def _auto_budget(settings, model, train_set: list[dict], precision: str) -> int:
    """`auto_max_tokens` of this process's GPU; with several workers the smallest of theirs
    (every worker must cut the same batches)."""
    import torch

    lengths = [example_lengths(e, settings.kind) for e in train_set]
    means = tuple(sum(column) / len(column) for column in zip(*lengths))
    per_token = activation_bytes_per_token(model.config, settings.kind, precision, settings.gradient_checkpointing,
                                           mean_lengths=means if settings.kind == "seq2seq" else None)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    share = settings.resources.gpus_per_worker if settings.resources.use_gpu else 1.0
    budget = auto_max_tokens(usable_gpu_memory(share), per_token, trainable)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        smallest = torch.tensor(budget, device="cuda")
        torch.distributed.all_reduce(smallest, op=torch.distributed.ReduceOp.MIN)
        budget = int(smallest.item())
    return budget
