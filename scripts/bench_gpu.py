"""raysum's training unit next to plain transformers + peft, on one GPU, in one run.

For each model shape (KoBART-shaped seq2seq, full fine-tune; Llama-3.2-3B-shaped causal
LM with LoRA r16 on all 7 projections) the script builds a randomly initialised model,
saves it with a tokenizer trained on the bundled Korean sample (so raysum loads it
through the real `from_pretrained` path), and measures on the same dialogues:

  train     plain `transformers.Trainer` (DataCollatorForSeq2Seq padding, random batch
            order, bf16, no checkpoint) vs `raysum.training.run_unit` (same batch size,
            1 epoch; includes its per-epoch resume checkpoint and the final save)
  generate  499 dialogues, beam 4, up to 100 new tokens: plain `generate` in input order
            (the seed's batch size: 50 for KoBART, 10 for the causal LM, timed on the
            first batches and extrapolated where noted) vs raysum's generation inside the
            unit (length-sorted batches of the preset's generation_batch_size, plus the
            log-probability pass every candidate gets)

Random weights rarely emit eos, so both sides generate close to 100 tokens; the token
counts are printed. Run on a GPU machine from the repository root:

    HF_HUB_OFFLINE=1 python scripts/bench_gpu.py --out /tmp/bench_gpu

`--shapes tiny` runs the same code with tiny shapes on CPU (a check of the script).
Writes `<out>/bench_gpu.json` and prints a table with the ratios last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_GENERATE = 499
NEW_TOKENS = 100

SHAPES = {
    "kobart-shape": dict(
        kind="seq2seq", architecture="bart", train_rows=1600, batch_size=50, seed_gen_batch=50, gen_batches=None,
        generation_batch_size=256, lora=None,
        config=dict(vocab_size=30000, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                    max_position_embeddings=1026)),
    "llama-3b-shape": dict(
        kind="causal", architecture="llama", train_rows=400, batch_size=8, seed_gen_batch=10, gen_batches=5,
        generation_batch_size=128, lora=dict(r=16, alpha=32, dropout=0.05),
        config=dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                    num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                    rope_theta=500000.0, tie_word_embeddings=True)),
}
TINY = {
    "kobart-shape": dict(vocab_size=3000, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         max_position_embeddings=1026),
    "llama-3b-shape": dict(vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           tie_word_embeddings=True),
}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_rows(n_train: int):
    """Training rows and 499 generation dialogues from the bundled sample."""
    import pandas as pd

    from raysum.data import bundled_data, load_dataset

    train = load_dataset(bundled_data("train"))
    dev, test = load_dataset(bundled_data("dev")), load_dataset(bundled_data("test"))
    rows = pd.DataFrame({"fname": train["fname"], "dialogue": train["dialogue"],
                         "summary": [r[0] for r in train["references"]]})
    extra = N_GENERATE - len(dev) - len(test)
    generate = pd.concat([dev[["fname", "dialogue"]], test[["fname", "dialogue"]],
                          train[["fname", "dialogue"]].iloc[:extra]], ignore_index=True)
    return rows.iloc[:n_train].reset_index(drop=True), rows, generate


def build_checkpoint(name: str, spec: dict, config_kwargs: dict, texts: list[str], target: Path, cuda: bool):
    """A random model of the shape plus a tokenizer trained on the sample, saved to `target`."""
    import torch

    from raysum.models.architectures import get_architecture
    from raysum.models.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(texts, 8000)
    architecture = get_architecture(spec["architecture"])
    kwargs = dict(config_kwargs, vocab_size=max(config_kwargs["vocab_size"], len(tokenizer)),
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if spec["kind"] == "seq2seq":
        kwargs.update(decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    config = architecture.build_config(**kwargs)
    dtype = torch.bfloat16 if cuda and spec["kind"] == "causal" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = architecture.build_model(config)
    finally:
        torch.set_default_dtype(previous)
    started = time.perf_counter()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return model, tokenizer, round(time.perf_counter() - started, 1)


def settings_for(name: str, spec: dict, checkpoint: Path, cuda: bool):
    from raysum.config.schema import model_settings_from_dict

    data = dict(name=name, kind=spec["kind"], checkpoint=str(checkpoint), epochs=1, batch_size=spec["batch_size"],
                learning_rate=5e-5 if spec["kind"] == "seq2seq" else 2e-4, warmup_ratio=0.1,
                max_source_length=512, max_target_length=100, num_beams=4, max_length=NEW_TOKENS,
                generation_batch_size=spec["generation_batch_size"],
                resources=dict(num_workers=1, use_gpu=cuda, cpus_per_worker=1))
    if spec["lora"]:
        data["lora"] = dict(spec["lora"])
    return model_settings_from_dict(data)


# ---------------------------------------------------------------- plain transformers + peft
def plain_generate(model, tokenizer, settings, dialogues: list[str], batch: int, max_batches: int | None) -> dict:
    """Input order, fixed batch, beam 4: how the seed's notebook generated."""
    import torch

    from raysum.models.prompts import encode_sources

    causal = settings.kind == "causal"
    tokenizer.padding_side = "left" if causal else "right"
    sources = encode_sources(tokenizer, settings, dialogues)
    batches = [sources[i:i + batch] for i in range(0, len(sources), batch)]
    timed = batches[:max_batches] if max_batches else batches
    device = next(model.parameters()).device
    model.eval()
    new_tokens = 0
    with torch.inference_mode():
        warm = tokenizer.pad({"input_ids": batches[0][:2]}, return_tensors="pt").to(device)
        model.generate(**warm, num_beams=4, max_new_tokens=4)
        sync()
        started = time.perf_counter()
        for part in timed:
            inputs = tokenizer.pad({"input_ids": part}, return_tensors="pt").to(device)
            out = model.generate(**inputs, num_beams=4, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, inputs["input_ids"].shape[1]:] if causal else out[:, 1:]
            new_tokens += int((new != tokenizer.pad_token_id).sum())
        sync()
    seconds = time.perf_counter() - started
    total = seconds * len(batches) / len(timed)
    return {"batch": batch, "timed_batches": len(timed), "batches": len(batches), "timed_s": round(seconds, 2),
            "all_499_s": round(total, 2), "estimated": len(timed) < len(batches),
            "mean_new_tokens": round(new_tokens / sum(len(p) for p in timed), 1)}


def plain_train(model, tokenizer, settings, rows, out_dir: Path, cuda: bool) -> dict:
    """`transformers.Trainer` with the usual recipe: padded batches in random order."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from raysum.models import encode_examples

    if settings.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
            target_modules=list(settings.lora.target_modules), task_type="CAUSAL_LM"))
    examples = encode_examples(tokenizer, settings, rows["dialogue"].tolist(), rows["summary"].tolist())
    tokenizer.padding_side = "right"
    args = TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=1, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, warmup_steps=0.1, bf16=cuda, use_cpu=not cuda,
        save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=10, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=examples,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, padding=True, label_pad_token_id=-100))
    model.train()
    sync()
    started = time.perf_counter()
    trainer.train()
    sync()
    seconds = time.perf_counter() - started
    real = sum(len(e["input_ids"]) for e in examples)
    return {"train_s": round(seconds, 2), "samples_per_s": round(len(examples) / seconds, 2),
            "real_tokens_per_s": round(real / seconds)}


# ---------------------------------------------------------------- raysum
def raysum_unit(settings, rows, generate, work: Path) -> dict:
    from raysum.training import run_unit

    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(inputs / "train.parquet", index=False)
    generate.to_parquet(inputs / "generate.parquet", index=False)
    started = time.perf_counter()
    summary = run_unit({"unit_dir": str(work / "unit"), "model": asdict(settings), "seed": 0,
                        "train_path": str(inputs / "train.parquet"),
                        "predict": {"dev": str(inputs / "generate.parquet")}})
    import pandas as pd

    predictions = pd.read_parquet(work / "unit" / "predictions.parquet")
    return {"train_s": summary["train_s"], "samples_per_s": round(summary["train_samples"] / summary["train_s"], 2),
            "generate_499_s": summary["generate_s"], "mean_new_tokens": round(float(predictions["n_tokens"].mean()), 1),
            "unit_wall_s": round(time.perf_counter() - started, 1), "precision": summary["precision"],
            "trainable_params": summary["trainable_params"], "device": summary["device"]}


def bench_shape(name: str, spec: dict, config_kwargs: dict, work: Path, cuda: bool) -> dict:
    import gc

    import torch

    rows, all_rows, generate = load_rows(spec["train_rows"])
    texts = all_rows["dialogue"].tolist() + all_rows["summary"].tolist()
    checkpoint = work / name / "checkpoint"
    model, tokenizer, save_s = build_checkpoint(name, spec, config_kwargs, texts, checkpoint, cuda)
    settings = settings_for(name, spec, checkpoint, cuda)
    result = {"shape": name, "params": sum(p.numel() for p in model.parameters()), "save_s": save_s}
    if not cuda or spec["kind"] == "seq2seq":
        model.to(torch.bfloat16 if cuda else torch.float32)
    result["plain_generate"] = plain_generate(model, tokenizer, settings, generate["dialogue"].tolist(),
                                              spec["seed_gen_batch"], spec["gen_batches"])
    print(name, "plain generate", result["plain_generate"], flush=True)
    if cuda and spec["kind"] == "seq2seq":
        model.float()  # full fine-tune: fp32 master weights with bf16 autocast, as raysum trains
    result["plain_train"] = plain_train(model, tokenizer, settings, rows, work / name / "plain", cuda)
    print(name, "plain train", result["plain_train"], flush=True)
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    result["raysum"] = raysum_unit(settings, rows, generate, work / name)
    print(name, "raysum unit", result["raysum"], flush=True)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    shutil.rmtree(checkpoint, ignore_errors=True)
    return result


def table(results: list[dict]) -> str:
    lines = [f"{'shape':16} {'measure':22} {'plain HF':>12} {'raysum':>12} {'raysum/plain':>13}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['shape']:16} error: {r['error'][:90]}")
            continue
        p, g, u = r["plain_train"], r["plain_generate"], r["raysum"]
        lines.append(f"{r['shape']:16} {'train samples/s':22} {p['samples_per_s']:12.2f} {u['samples_per_s']:12.2f} "
                     f"{u['samples_per_s'] / p['samples_per_s']:12.2f}x")
        est = " (est.)" if g["estimated"] else ""
        lines.append(f"{r['shape']:16} {'generate 499 s' + est:22} {g['all_499_s']:12.2f} {u['generate_499_s']:12.2f} "
                     f"{g['all_499_s'] / u['generate_499_s']:12.2f}x faster")
        lines.append(f"{r['shape']:16} {'mean new tokens':22} {g['mean_new_tokens']:12.1f} {u['mean_new_tokens']:12.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/bench_gpu")
    parser.add_argument("--shapes", choices=["full", "tiny"], default="full")
    parser.add_argument("--only", nargs="*", default=list(SHAPES))
    ns = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if ns.shapes == "full" and not cuda:
        print("the full shapes need a CUDA GPU; use --shapes tiny for a CPU check of the script")
        return 2
    out = Path(ns.out)
    work = Path(os.environ.get("BENCH_WORK", "/tmp/bench_gpu_work"))
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    env = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
           "transformers": transformers.__version__}
    results = []
    for name in ns.only:
        spec = dict(SHAPES[name])
        if ns.shapes == "tiny":
            spec.update(train_rows=min(spec["train_rows"], 64), gen_batches=spec["gen_batches"] and 2)
        started = time.perf_counter()
        try:
            result = bench_shape(name, spec, TINY[name] if ns.shapes == "tiny" else spec["config"], work, cuda)
        except Exception as exc:  # one shape failing still reports the other
            import traceback

            traceback.print_exc()
            result = {"shape": name, "error": repr(exc)}
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
        (out / "bench_gpu.json").write_text(json.dumps({"env": env, "results": results}, indent=1))
    print(json.dumps(env))
    print(table(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
