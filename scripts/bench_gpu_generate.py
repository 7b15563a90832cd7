"""The generation rows of scripts/bench_gpu.py: plain `generate` against raysum's engine on
the same model and prompts, timed, with counts taken from the runs themselves.

Both sides decode alike: beam 4 (early stopping) or greedy, up to `new_tokens` new tokens,
no length penalty, no n-gram blocking.

  plain   `model.generate` on padded batches, as the seed did (generate only, no log-probs):
          at the seed's batch (KoBART 50, causal 10) in input order, and at the strongest
          plain setting of the H200 baselines, longest first (beam 4: KoBART 500, causal 128;
          greedy: 500 / 512).
  raysum  the model prepared as a unit prepares it (`prepare_model`: eval, half precision on
          CUDA, KV cache on) and one `GenerationEngine` for every row: length-sorted token-budget
          batches up to the preset's `generation_batch_size`, static KV cache + compiled decoding
          for greedy on CUDA, the log-probs recorded during generation (included in its times).

The sorted rows of both sides generate the same dialogues (`timed`): all of them, or those
of ranks `timed_ranks` by length, longest first (the causal shapes on a GPU: ranks 128-255,
plain's second batch of 128, one batch each side, prompts ~10% above the mean length),
scaled to every dialogue by their number when fewer (raysum's greedy batch includes its
compile, which the scaling repeats as if every batch compiled anew). The seed's row times
its first `seed_timed_batches` batches in input order and scales the same way.

Counts, from the runs (`recorded_generate`): every `generate` call gets a logits processor
that notes each decoding step (one model forward: the prefill, then one per new token, for
every row of the batch, finished or not); on CPU a forward hook counts the forward calls as
well (on CUDA it would sit inside the engine's compiled decoding step). Extra scoring passes
are the engine's teacher-forced log-prob passes (its fallback, `counted_scoring`); plain
scores nothing, and raysum's earlier path scored every batch once more.

Random weights: a random BART predicts its decoder-start token, eos, at once, so its eos
logit is held back while the rows run (`eos_held_back`); causal random models seldom end.
Both sides thus generate close to `new_tokens` tokens, as the baselines forced
(min_new_tokens) and an upper bound for trained models.
"""

from __future__ import annotations

import contextlib
import functools
import time

from bench_gpu_train import sync

DECODINGS = ("beam4", "greedy")


def decoding(name: str, new_tokens: int):
    from raysum.generation import Decoding

    return Decoding(num_beams=4 if name == "beam4" else 1, max_new_tokens=new_tokens)


def plain_kwargs(chosen, pad_token_id: int) -> dict:
    """`generate`'s arguments on the plain side: the engine's decoding, nothing more."""
    beams = chosen.num_beams
    return dict(num_beams=beams, max_new_tokens=chosen.max_new_tokens, do_sample=False,
                early_stopping=True if beams > 1 else None, pad_token_id=pad_token_id)


# ---------------------------------------------------------------- counting from the runs
def _step_counter():
    from transformers import LogitsProcessor

    class StepCounter(LogitsProcessor):
        """Called once per decoding step (after each forward) with the batch's ids so far."""

        def __init__(self):
            self.steps, self.positions, self.first_shape = 0, 0, None

        def __call__(self, input_ids, scores):
            if self.first_shape is None:
                self.first_shape = tuple(input_ids.shape)
            self.steps += 1
            self.positions += input_ids.shape[0]  # rows x beams, finished or not
            return scores

    return StepCounter()


@contextlib.contextmanager
def recorded_generate(model, causal: bool, hooked: bool):
    """While the block runs, every `model.generate` call (plain's or the engine's) is timed
    (CUDA synchronised) and counted: one record per call in the list yielded."""
    from transformers import LogitsProcessorList

    original, calls = model.generate, []
    own = vars(model).get("generate")  # an instance's own generate (a test's patch) is put back

    def generate(*args, **kwargs):
        counter = _step_counter()
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), counter])
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        rows, width = ids.shape
        record = {"rows": rows, "width": width, "prompt_tokens": int(mask.sum()), "beams": kwargs.get("num_beams", 1),
                  "static": kwargs.get("cache_implementation") == "static", "failed": True}
        forwards = []
        hook = model.register_forward_pre_hook(lambda *_: forwards.append(1)) if hooked else None
        sync()
        started = time.perf_counter()
        try:
            out = original(*args, **kwargs)
            record["failed"] = False
            return out
        finally:
            sync()
            record.update(seconds=round(time.perf_counter() - started, 3), steps=counter.steps,
                          positions=counter.positions,
                          # the prefill: causal rows x beams x prompt width; seq2seq encoder rows x width
                          prompt_positions=(counter.first_shape[0] * width if causal and counter.first_shape
                                            else rows * width))
            if hook is not None:
                hook.remove()
                record["hooked_forwards"] = len(forwards)
            calls.append(record)

    model.generate = generate
    try:
        yield calls
    finally:
        if own is None:
            del model.generate  # the class's method again
        else:
            model.generate = own


@contextlib.contextmanager
def counted_scoring():
    """The engine's teacher-forced log-prob passes (its fallback) while the block runs."""
    from raysum.generation import _logprobs

    original, calls = _logprobs.teacher_forced, []

    def teacher_forced(model, batch, sequences, *args, **kwargs):
        calls.append(int(sequences.shape[0]))
        return original(model, batch, sequences, *args, **kwargs)

    _logprobs.teacher_forced = teacher_forced
    try:
        yield calls
    finally:
        _logprobs.teacher_forced = original


def summary(calls: list[dict], outputs: dict[int, list[int]], seconds: float, dialogues: int,
            scoring: list[int]) -> dict:
    """Times (scaled to `dialogues` when fewer were generated) and counts of one row."""
    done = [c for c in calls if not c["failed"]]
    timed = len(outputs)
    kept = sum(len(tokens) for tokens in outputs.values())
    counts = {"dialogues": timed, "batches": len(done),
              "forward_passes": sum(c["steps"] for c in done),
              "positions_computed": sum(c["positions"] for c in done),
              "tokens_kept": kept,
              "prompt_positions": sum(c["prompt_positions"] for c in done),
              "prompt_tokens": sum(c["prompt_tokens"] for c in done),
              "extra_scoring_passes": len(scoring),
              "failed_calls": len(calls) - len(done),
              "failed_forward_passes": sum(c["steps"] for c in calls if c["failed"])}
    if all("hooked_forwards" in c for c in calls):
        counts["hooked_forwards"] = sum(c["hooked_forwards"] for c in done)
    for key in ("forward_passes", "positions_computed", "tokens_kept"):
        counts[f"{key}_per_dialogue"] = round(counts[key] / timed, 2)
    counts["kept_per_computed"] = round(kept / counts["positions_computed"], 4)
    return {"timed_s": round(seconds, 3), "timed_dialogues": timed, "dialogues": dialogues,
            "estimated": timed < dialogues, "all_s": round(seconds * dialogues / timed, 3),
            "batch_s": [c["seconds"] for c in calls], "static_batches": sum(c["static"] for c in done),
            "mean_new_tokens": round(kept / timed, 1), "counts": counts}


# ---------------------------------------------------------------- the two sides
def plain_generate(model, tokenizer, sources: list[list[int]], order: list[int], batch: int, chosen,
                   eos: list[int], causal: bool, max_batches: int | None = None) -> tuple[dict, dict]:
    """`model.generate` over `order` cut into batches of `batch` (the first `max_batches`)."""
    import torch

    from raysum.generation._text import until_eos

    batches = [order[i:i + batch] for i in range(0, len(order), batch)][:max_batches]
    tokenizer.padding_side = "left" if causal else "right"
    device, outputs = next(model.parameters()).device, {}
    with recorded_generate(model, causal, hooked=device.type == "cpu") as calls, torch.inference_mode():
        started = time.perf_counter()
        for part in batches:
            inputs = tokenizer.pad({"input_ids": [sources[i] for i in part]}, return_tensors="pt").to(device)
            out = model.generate(**inputs, **plain_kwargs(chosen, tokenizer.pad_token_id))
            new = out[:, inputs["input_ids"].shape[1]:] if causal else out[:, 1:]
            for i, ids, n in zip(part, new.tolist(), until_eos(new, eos).sum(1).tolist()):
                outputs[i] = ids[:n]
        seconds = time.perf_counter() - started
    return {"calls": calls, "seconds": seconds}, outputs


def raysum_generate(engine, sources: list[list[int]], subset: list[int], chosen, max_rows: int,
                    causal: bool) -> tuple[dict, dict]:
    """One `engine.generate` call over the `subset`'s sources, as a unit makes it."""
    with recorded_generate(engine.model, causal, hooked=engine.device.type == "cpu") as calls, \
            counted_scoring() as scoring:
        sync()
        started = time.perf_counter()
        rows = engine.generate([sources[i] for i in subset], chosen, max_rows)
        sync()
        seconds = time.perf_counter() - started
    return {"calls": calls, "seconds": seconds, "scoring": scoring}, {i: r.tokens for i, r in zip(subset, rows)}


def equality(plain: dict, ours: dict) -> dict:
    """Whether both sides generated the same tokens, dialogue by dialogue, and how many
    different outputs there were (random weights tend to write one summary for every prompt,
    which makes the equality say little)."""
    differ = [i for i in ours if plain.get(i) != ours[i]]
    result = {"dialogues": len(ours), "equal": len(ours) - len(differ), "all_equal": not differ,
              "distinct_outputs": len({tuple(tokens) for tokens in ours.values()})}
    if differ:
        a, b = plain.get(differ[0], []), ours[differ[0]]
        result["first_difference"] = {"dialogue": differ[0],
                                      "position": next((k for k, (x, y) in enumerate(zip(a, b)) if x != y),
                                                       min(len(a), len(b)))}
    return result


# ---------------------------------------------------------------- the rows of one shape
def generation_rows(model, tokenizer, settings, sources: list[list[int]], plan: dict, cuda: bool, fits, progress,
                    result: dict) -> None:
    """Every generation row of one shape, written into `result` as each finishes (`progress()`
    after each); a row starts only if `fits("generate")` (raysum's greedy row on CUDA, which
    compiles: `fits("compile")`), else it is marked skipped. `plan`: seed_batch,
    seed_timed_batches, sorted_batch (per decoding), timed_ranks, engine_rows, new_tokens."""
    from raysum.generation import GenerationEngine, prepare_model
    from raysum.models import resolve_precision, torch_dtype

    precision = resolve_precision(settings, cuda=cuda)
    half = cuda and settings.quantization is None and precision != "fp32"
    model = prepare_model(model, dtype=torch_dtype(precision) if half else None)  # both sides use it
    notes: list[str] = []
    engine = GenerationEngine(model, tokenizer, log=notes.append)
    causal, eos, new_tokens = settings.kind == "causal", engine.eos, plan["new_tokens"]
    lengths = [len(s) for s in sources]
    longest_first = sorted(range(len(sources)), key=lambda i: (-lengths[i], i))
    timed = longest_first[slice(*plan["timed_ranks"])] if plan["timed_ranks"] else longest_first
    result.update(dialogues=len(sources), new_tokens=new_tokens, dtype=str(model.dtype).replace("torch.", ""),
                  prompt_tokens={"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                                 "max": max(lengths)},
                  timed_dialogues=len(timed), engine_max_rows=plan["engine_rows"], engine_notes=notes)
    run = functools.partial(_row, result, len(sources), cuda, fits, progress)
    with eos_held_back(model, eos), _compiled_state_freed(cuda):
        _warm_up(model, tokenizer, sources, causal)
        for name in DECODINGS:
            chosen, batch = decoding(name, new_tokens), plan["sorted_batch"][name]
            result[name] = {"plain_setting": {"batch": batch, "order": "longest first"}}
            plain = run(name, "plain", "generate", functools.partial(
                plain_generate, model, tokenizer, sources, timed, batch, chosen, eos, causal))
            ours = run(name, "raysum", "compile" if cuda and name == "greedy" else "generate", functools.partial(
                raysum_generate, engine, sources, timed, chosen, plan["engine_rows"], causal))
            if plain is not None and ours is not None:
                result[name]["equal_tokens"] = equality(plain, ours)
                progress()
        result["beam4_seed"] = {"plain_setting": {"batch": plan["seed_batch"], "order": "input order"}}
        run("beam4_seed", "plain", "generate", functools.partial(
            plain_generate, model, tokenizer, sources, list(range(len(sources))), plan["seed_batch"],
            decoding("beam4", new_tokens), eos, causal, plan["seed_timed_batches"]))


def _row(result: dict, dialogues: int, cuda: bool, fits, progress, key: str, side: str, need: str, generate):
    """One side of one row into result[key][side]; its outputs, or None when skipped or failed."""
    import torch

    if not fits(need):
        result[key][side] = {"skipped": "deadline (--deadline-s)"}
        return None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        record, outputs = generate()
    except Exception as exc:  # noqa: BLE001 - one row failing (memory, a kernel) still reports the others
        import traceback

        traceback.print_exc()
        result[key][side] = {"error": repr(exc)[:300]}
        return None
    finally:
        if cuda:
            torch.cuda.empty_cache()
    scored = summary(record["calls"], outputs, record["seconds"], dialogues, record.get("scoring", []))
    scored["wall_s"] = round(time.perf_counter() - started, 1)
    if cuda:
        scored["peak_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result[key][side] = scored
    print("generate", key, side, {k: v for k, v in scored.items() if k != "batch_s"}, flush=True)
    progress()
    return outputs


@contextlib.contextmanager
def eos_held_back(model, eos: list[int]):
    """A random BART predicts its decoder-start token (eos) at once and would stop after one
    token: while the rows run its eos logits are lowered (`final_logits_bias`), so both sides
    generate up to the limit, as a trained model's summaries of ~50-100 tokens roughly do and
    as the baselines did (min_new_tokens). The forced eos at the limit still ends each row.
    Causal random models repeat their prompt's last token rather than end: left as they are."""
    import torch

    bias = getattr(model, "final_logits_bias", None)
    if bias is None:
        yield
        return
    original = bias.clone()
    with torch.no_grad():
        bias[..., eos] = -1e4
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(original)


@contextlib.contextmanager
def _compiled_state_freed(cuda: bool):
    """After the rows, the engine's compiled decoding and its CUDA graphs' memory pools go,
    so that training finds the memory it would without them."""
    try:
        yield
    finally:
        if cuda:
            import torch

            torch._dynamo.reset()  # also the CUDA graph trees
            torch.cuda.empty_cache()


def _warm_up(model, tokenizer, sources: list[list[int]], causal: bool) -> None:
    """CUDA's kernels and handles, for both sides alike (not the engine's compile: that is its cost)."""
    import torch

    tokenizer.padding_side = "left" if causal else "right"
    inputs = tokenizer.pad({"input_ids": sources[:2]}, return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        for beams in (4, 1):
            model.generate(**inputs, num_beams=beams, max_new_tokens=4, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
    sync()
