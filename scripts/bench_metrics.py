"""Time raysum.metrics on 499 dialogues x 3 references against rouge-score's RougeScorer.

    .venv/bin/python scripts/bench_metrics.py            # 499 dialogues, seed 0
    .venv/bin/python scripts/bench_metrics.py --n 200

Uses the summaries of raysum/resources/data/test.csv when it exists (prediction = a
perturbed summary2, references = summary1..3), else synthesized Korean sentences.
Prints Kiwi's one-time initialisation, the cold score (tokenizing + scoring), the
scoring alone on cached tokens, and rouge-score's RougeScorer with the same
KoreanTokenizer (cold: one kiwi call per text; cached: scoring only), with ratios.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import pandas as pd

from raysum import metrics

KEYS = list(metrics.ROUGE_KEYS)
TEST_CSV = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data" / "test.csv"

_NOUNS = "사람 회의 고객 직원 예약 전화 가방 시간 약속 병원 선생님 친구 영화 저녁 식당 주문 환불 여행 호텔 가격".split()
_PARTICLES = ["은", "는", "이", "가", "를", "에게", "와", "의", "에서"]
_ENDINGS = ["만나기로 했다", "취소하려고 한다", "확인해 달라고 요청한다", "추천한다", "물어본다", "설명한다"]
_TAGS = ["#Person1#", "#Person2#", "#PhoneNumber#", "#Address#"]


def _synth_sentence(rng: random.Random) -> str:
    words = [rng.choice(_TAGS) + "는"]
    words += [rng.choice(_NOUNS) + rng.choice(_PARTICLES) for _ in range(rng.randint(4, 12))]
    return " ".join(words) + " " + rng.choice(_ENDINGS) + "."


def _perturb(text: str, rng: random.Random) -> str:
    """A plausible model output: drop ~15% of the words and swap two neighbours."""
    words = [w for w in text.split() if rng.random() > 0.15] or text.split()
    if len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def build_data(n: int, seed: int) -> tuple[list[str], list[list[str]], str]:
    rng = random.Random(seed)
    if TEST_CSV.exists():
        columns = ["summary1", "summary2", "summary3"]
        rows = pd.read_csv(TEST_CSV)[columns].astype(str).values.tolist()
        # Fewer rows than asked: reuse them, perturbing the references of each repeat so
        # every text is new to the tokenizer cache, as in a real data set.
        references = [rows[i % len(rows)] for i in range(n)]
        references = [
            refs if i < len(rows) else [_perturb(r, rng) for r in refs]
            for i, refs in enumerate(references)
        ]
        predictions = [_perturb(refs[1], rng) for refs in references]
        return predictions, references, f"{TEST_CSV.name} ({len(rows)} rows)"
    references = [
        [" ".join(_synth_sentence(rng) for _ in range(rng.randint(1, 3))) for _ in range(3)]
        for _ in range(n)
    ]
    predictions = [_perturb(refs[1], rng) for refs in references]
    return predictions, references, "synthesized Korean"


def _timed(run, repeat: int, cold: bool) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (the machine may be shared) and the last result."""
    times = []
    for _ in range(repeat):
        if cold:
            metrics.clear_cache()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def _rouge_score_mean(predictions, references, scorer) -> dict:
    rows = []
    for pred, refs in zip(predictions, references):
        per_ref = [scorer.score(ref, pred) for ref in refs]
        rows.append({k: sum(s[k].fmeasure for s in per_ref) / len(refs) for k in KEYS})
    return pd.DataFrame(rows).mean().to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=499, help="number of dialogues")
    parser.add_argument("--seed", type=int, default=0, help="seed for perturbing / synthesizing")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best is shown")
    args = parser.parse_args()

    from rouge_score import rouge_scorer

    predictions, references, source = build_data(args.n, args.seed)
    n_texts = len(set(predictions) | {r for refs in references for r in refs})
    print(f"data: {args.n} dialogues x 3 references from {source}, {n_texts} distinct texts")
    print(f"times: best of {args.repeat} runs (pairwise: one run)")

    def row(label: str, seconds: float, base: float | None = None) -> None:
        ratio = f"  ({seconds / base:.1f}x raysum)" if base else ""
        print(f"  {label:40s}{seconds:7.3f} s{ratio}")

    start = time.perf_counter()
    metrics.tokenize("")  # the first kiwi call builds the process's Kiwi
    row("kiwi init (once per process)", time.perf_counter() - start)

    def ours_run():
        return metrics.score(predictions, references)

    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_KEYS), tokenizer=metrics.KoreanTokenizer())

    def theirs_run():
        return _rouge_score_mean(predictions, references, scorer)

    cold, ours = _timed(ours_run, args.repeat, cold=True)
    row("raysum score, cold (tokenize + score)", cold)
    warm, _ = _timed(ours_run, args.repeat, cold=False)
    row("raysum score, tokens cached", warm)
    rs_cold, theirs = _timed(theirs_run, args.repeat, cold=True)
    row("rouge-score, cold (kiwi per text)", rs_cold, cold)
    rs_warm, _ = _timed(theirs_run, args.repeat, cold=False)
    row("rouge-score, tokens cached", rs_warm, warm)

    # Ensemble-style load: 12 candidates per dialogue compared pairwise (66 pairs each).
    rng = random.Random(args.seed + 1)
    candidates = [[_perturb(refs[i % 3], rng) for i in range(12)] for refs in references]
    tokens = [metrics.tokenize_many(group) for group in candidates]
    start = time.perf_counter()
    for group in tokens:
        metrics.pairwise_rouge_f1(group)
    row(f"pairwise_rouge_f1, {args.n} x 12 candidates", time.perf_counter() - start)

    diff = max(abs(ours[k] - theirs[k]) for k in metrics.ROUGE_KEYS)
    print(
        f"rouge1 {ours['rouge1']:.4f} rouge2 {ours['rouge2']:.4f} rougeL {ours['rougeL']:.4f} "
        f"rouge_sum {ours['rouge_sum']:.4f} competition_score {ours['competition_score']:.2f}; "
        f"max |raysum - rouge-score| = {diff:.1e}"
    )
    verdict = "within" if cold <= 2.0 else "OVER"
    print(f"{verdict} the 2 s budget for {args.n} dialogues x 3 references")


if __name__ == "__main__":
    main()
