"""The generation engine: every summary raysum generates goes through it.

A unit prepares one engine after training and reuses it for every pass: out-of-fold, dev
and test, each TTA variant, each decoding setting (`raysum.training.unit.generate`);
`raysum predict` prepares one per finished unit. The untrained baseline and the
per-epoch `eval_score` run on the model while it trains: an engine borrows it for the
pass (eval mode and back, LoRA left unmerged, weights left in their training dtype,
dynamic KV cache: compiling or casting a model that keeps training is not ours to do).

Prepared once (:func:`prepare_model`): eval mode, LoRA merged into the weights (peft's
`merge_and_unload`; never into 4-bit weights), cast to the unit's half precision on CUDA
(bf16 by default; fp32 stays fp32 on CPU), KV cache on.

Batches: sources sorted by length, longest first (memory problems show at once), cut
by a token budget, rows × (prompt + max new tokens): on CUDA sized from free memory and
the KV cache's bytes per token, on CPU a fixed budget of `generation_batch_size` rows;
`generation_batch_size` bounds the rows everywhere (`raysum.generation._budget`).
Causal LMs are left-padded and only their new tokens are decoded. The output of a
dialogue does not depend on the batch it lands in, the budget or the input order (up to
floating-point noise between padded shapes, which the tests bound: equal tokens on the
tiny models).

KV cache: on CUDA, greedy and sampled decoding use transformers' static cache and its
own compiled decoding step (`cache_implementation="static"`, compiled with the model's
default `CompileConfig` at the first batch, prefill left eager) where the model allows
it (`_can_compile_fullgraph`, not quantized); beam search (transformers does not
compile its loop) and other models use the dynamic cache, said once in a one-line note.
A static batch that fails is generated again with the dynamic cache, which the engine
keeps from then on (noted). On CPU: the dynamic cache, no note.

Log-probs come from the generation itself (`raysum.generation._logprobs`): `logprob` is
the mean log-probability of the generated tokens (the summary and its eos) under the raw
model distribution — no n-gram blocking, no length penalty, no temperature — and
`n_tokens` counts the same tokens. No second forward pass, except for a batch where a
chosen token was not among the candidates a step kept (a tie at their edge): that batch
is scored teacher-forced, which gives the same numbers.

Sampling (`do_sample` with `temperature`/`top_p`) is seeded per decoding setting and
keyed per dialogue, so it too is independent of the batch (`raysum.generation._sampling`).

Finished sequences still cost compute: a dialogue whose summary ended stays in its
batch, padded, until the batch's longest summary ends. transformers 5.24 offers
continuous batching (`generate_batch`: paged KV cache, finished requests leave the batch
and waiting ones join) but not for this engine: it is for decoder-only models (not
KoBART), has no beam search (the presets' default), hands its logits processors only
each request's last token (so n-gram blocking, which needs the history, is dropped),
returns log-probs of the processed distribution (after temperature), swaps the model's
attention implementation for a paged one and runs in a background thread. Using it for
causal greedy/sampled decoding without n-gram blocking would take: a paged-attention
check that it generates the same tokens as `generate` on each preset, raw log-probs from
its model runner (a processor at the head of its list, as here), and per-request seeds
for sampling; length-sorted batches are what this engine does instead.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass

from raysum.generation._budget import cuda_rows, fixed_rows, plan_batches, usable_gpu_memory
from raysum.generation._text import decode, eos_ids, strip_ids, until_eos


@dataclass(frozen=True)
class Decoding:
    """One decoding setting in `generate`'s terms."""

    num_beams: int = 1
    max_new_tokens: int = 100
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0  # sampling only: with each dialogue's prompt ids, the key of its noise
    early_stopping: bool = True  # beam search: stop once num_beams hypotheses ended

    @classmethod
    def of(cls, settings, seed: int = 0) -> Decoding:
        """The decoding a model's settings ask for (`num_beams`, `max_length`, ...)."""
        return cls(num_beams=settings.num_beams, max_new_tokens=settings.max_length,
                   length_penalty=settings.length_penalty, no_repeat_ngram_size=settings.no_repeat_ngram_size,
                   do_sample=settings.do_sample, temperature=settings.temperature, top_p=settings.top_p, seed=seed)


@dataclass
class Generated:
    """One generated row: its tokens up to and including the first eos, and their mean raw log-prob."""

    tokens: list[int]
    logprob: float


def prepare_model(model, *, dtype=None, merge_lora: bool = True):
    """The trained model, ready to generate: LoRA merged (in place: it is the final model),
    cast to `dtype` when given, eval mode, KV cache on."""
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if dtype is not None:
        model.to(dtype)
    model.config.use_cache = True
    return model.eval()


class GenerationEngine:
    """Summaries (or any token ids) of one model, generated by length-sorted token-budget
    batches with the log-probs taken on the way.

    ``cache``: ``auto`` (static on CUDA where supported, see the module doc), ``dynamic``
    (a model that keeps training), or ``static`` (tests on CPU). ``token_budget``: a fixed
    budget instead of the device's (tests)."""

    def __init__(self, model, tokenizer, *, cache: str = "auto", token_budget: int | None = None, log=print):
        if cache not in ("auto", "dynamic", "static"):
            raise ValueError(f"cache must be auto, dynamic or static, got {cache!r}")
        self.model, self.tokenizer = model, tokenizer
        self.cache, self.token_budget, self.log = cache, token_budget, log
        self.causal = not model.config.is_encoder_decoder
        self.eos = eos_ids(model, tokenizer)
        self._noted: set[str] = set()

    # ------------------------------------------------------------ summaries
    def summaries(self, settings, dialogues: list[str], seed: int = 0,
                  shots: list[list[tuple[str, str]]] | None = None) -> list[dict]:
        """One ``{"text", "n_tokens", "logprob"}`` per dialogue, in input order; ``shots``: each
        dialogue's few-shot examples (few-shot prompts)."""
        from raysum.models.prompts import encode_sources

        if not dialogues:
            return []
        sources = encode_sources(self.tokenizer, settings, dialogues, shots)
        share = settings.resources.gpus_per_worker if settings.resources.use_gpu else 1.0
        rows = self.generate(sources, Decoding.of(settings, seed), settings.generation_batch_size, gpu_share=share)
        texts = decode(self.tokenizer, [row.tokens for row in rows], strip_ids(self.tokenizer))
        return [{"text": text, "n_tokens": len(row.tokens), "logprob": row.logprob} for text, row in zip(texts, rows)]

    # ------------------------------------------------------------ token ids
    def generate(self, sources: list[list[int]], decoding: Decoding, max_rows: int,
                 gpu_share: float = 1.0) -> list[Generated]:
        """One :class:`Generated` per source (model input ids), in input order."""
        import torch

        if decoding.do_sample and decoding.num_beams > 1:
            raise ValueError("sampling generates with num_beams 1")
        if not sources:
            return []
        lengths = [self._padded(len(s)) for s in sources]
        rows_for = self._rows_for(decoding, max_rows, max(lengths), gpu_share)
        results: list[Generated | None] = [None] * len(sources)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for index in plan_batches(lengths, decoding.max_new_tokens, max_rows, rows_for):
                    for i, row in zip(index, self._batch([sources[i] for i in index], decoding)):
                        results[i] = row
        finally:
            self.model.train(was_training)
        return results

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _padded(self, length: int) -> int:
        return -(-length // 8) * 8 if self.device.type == "cuda" else length

    def _rows_for(self, decoding: Decoding, max_rows: int, longest: int, gpu_share: float):
        if self.token_budget is not None:
            return fixed_rows(self.token_budget)
        if self.device.type != "cuda":
            return fixed_rows(max_rows * (longest + decoding.max_new_tokens))
        dtype_bytes = self.model.dtype.itemsize  # the KV cache is kept in the compute dtype
        config = self.model.config  # flat for BART (its get_text_config(decoder=True) renames and defaults keys)
        config = config.get_text_config(decoder=True) if hasattr(config, "text_config") else config
        return cuda_rows(config, dtype_bytes, decoding.num_beams, usable_gpu_memory(self.device, gpu_share),
                         max_rows)

    # ------------------------------------------------------------ one batch
    def _batch(self, sources: list[list[int]], decoding: Decoding) -> list[Generated]:
        batch = self._pad(sources)
        if self._static(decoding):
            try:
                return self._generate(batch, sources, decoding, static=True)
            except Exception as exc:  # noqa: BLE001 - any failure of the compiled path: the dynamic one decides
                self.cache = "dynamic"
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                self._note("static-failed", f"note: the static KV cache failed ({type(exc).__name__}: {first}); "
                                            "generating with the dynamic cache from here on")
        return self._generate(batch, sources, decoding, static=False)

    def _generate(self, batch: dict, sources: list[list[int]], decoding: Decoding, static: bool) -> list[Generated]:
        import torch

        from raysum.generation._logprobs import StepLogProbs, teacher_forced

        beams = decoding.num_beams
        steps = StepLogProbs(width=(len(self.eos) + 1) * beams + 1)
        kwargs = self._generate_kwargs(decoding, static)
        if decoding.do_sample:
            kwargs["logits_processor"] = [self._sampler(decoding, sources)]
        recording = recording_supported()
        if recording:
            out = self.model.generate(**batch, **kwargs, custom_generate=_recording(steps))
        else:
            self._note("no-recording", "note: this transformers version cannot run its decoding loop as a "
                                       "custom_generate callable; log-probs come from a teacher-forced pass")
            out = self.model.generate(**batch, **kwargs)
        sequences = out.sequences if beams > 1 else out
        new = sequences[:, batch["input_ids"].shape[1] if self.causal else 1:]
        mask = until_eos(new, self.eos)
        if recording:
            values, found = steps.lookup(new, out.beam_indices if beams > 1 else None)
        if not recording or bool((mask.bool() & ~found).any()):
            means = teacher_forced(self.model, batch, sequences, new, mask, self.causal)
        else:
            weights = mask.float()
            means = (values * weights).sum(1) / weights.sum(1).clamp(min=1)
        counts, means = mask.sum(1).tolist(), torch.as_tensor(means).tolist()
        return [Generated(ids[:n], float(m)) for ids, n, m in zip(new.tolist(), counts, means)]

    def _pad(self, sources: list[list[int]]) -> dict:
        """Input ids and attention mask, left-padded for causal LMs, right for seq2seq."""
        import torch

        width = self._padded(max(len(s) for s in sources))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(sources), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sources), width), dtype=torch.long)
        for row, source in enumerate(sources):
            span = slice(width - len(source), width) if self.causal else slice(0, len(source))
            ids[row, span] = torch.tensor(source, dtype=torch.long)
            mask[row, span] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _generate_kwargs(self, decoding: Decoding, static: bool) -> dict:
        beams = decoding.num_beams
        kwargs = dict(
            do_sample=False, num_beams=beams, max_new_tokens=decoding.max_new_tokens,
            # length_penalty only acts on beam scores; greedy search would warn about it.
            length_penalty=decoding.length_penalty if beams > 1 else None,
            early_stopping=decoding.early_stopping if beams > 1 else None,
            no_repeat_ngram_size=decoding.no_repeat_ngram_size or None,
            # instruct checkpoints ship sampling defaults; sampling here is the seeded sampler's.
            temperature=None, top_p=None, top_k=None,
            eos_token_id=self.eos, pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
            # beam search: the output's beam_indices tell which row each token was chosen in
            return_dict_in_generate=beams > 1, output_scores=False,
        )
        if static:
            kwargs["cache_implementation"] = "static"
        return kwargs

    def _sampler(self, decoding: Decoding, sources: list[list[int]]):
        import torch

        from raysum.generation._sampling import SeededSampler, row_key

        keys = torch.tensor([row_key(decoding.seed, s) for s in sources], dtype=torch.long, device=self.device)
        return SeededSampler(decoding.temperature, decoding.top_p, keys)

    # ------------------------------------------------------------ the KV cache
    def _static(self, decoding: Decoding) -> bool:
        """Whether this batch uses the static cache (see the module doc); notes why not on CUDA."""
        if self.cache != "auto":
            return self.cache == "static"
        if self.device.type != "cuda":
            return False
        model = self.model
        quantizer = getattr(model, "hf_quantizer", None)
        if decoding.num_beams > 1:
            self._note("beams", f"note: generating with the dynamic KV cache: beam search (num_beams "
                                f"{decoding.num_beams}) runs transformers' uncompiled loop")
            return False
        if not getattr(model, "_can_compile_fullgraph", False) or (quantizer is not None
                                                                   and not quantizer.is_compileable):
            self._note("model", f"note: generating with the dynamic KV cache: transformers does not compile "
                                f"{type(model).__name__}{' (quantized)' if quantizer is not None else ''}")
            return False
        return True

    def _note(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.log(text)


@functools.cache
def recording_supported() -> bool:
    """Whether this transformers runs a callable `custom_generate` (the decoding loop that
    records log-probs) and names each mode's decoding method (`GENERATION_MODES_MAPPING`)."""
    import inspect

    try:
        from transformers import GenerationMixin
        from transformers.generation.utils import GENERATION_MODES_MAPPING  # noqa: F401
    except ImportError:
        return False
    if "custom_generate" not in inspect.signature(GenerationMixin.generate).parameters:
        return False
    source = inspect.getsource(GenerationMixin.generate)  # older versions take a Hub repo name only
    return "isinstance(custom_generate, Callable)" in source or "callable(custom_generate)" in source


def _recording(steps):
    """A `custom_generate` loop: transformers' own decoding method for the mode (`_sample`
    for greedy and sampled decoding, `_beam_search`), its logits processors bracketed by
    the two that record the log-probs (`generate` would put ours after its own)."""

    def decoding_loop(model, input_ids, logits_processor, generation_config, **kwargs):
        from transformers import LogitsProcessorList
        from transformers.generation.utils import GENERATION_MODES_MAPPING

        method = getattr(type(model), GENERATION_MODES_MAPPING[generation_config.get_generation_mode()])
        processors = LogitsProcessorList([steps.first, *logits_processor, steps.last])
        return method(model, input_ids, logits_processor=processors, generation_config=generation_config, **kwargs)

    return decoding_loop


def generate_summaries(model, tokenizer, settings, dialogues: list[str]) -> list[dict]:
    """Summaries of `dialogues` by an engine over `model` as it is (not prepared: a model
    that goes on training, a test's model)."""
    return GenerationEngine(model, tokenizer, cache="dynamic").summaries(settings, dialogues)
