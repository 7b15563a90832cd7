"""Korean ROUGE: kiwi-morpheme (default) or whitespace tokens, rouge-score's F1 arithmetic.

    >>> from raysum.metrics import score
    >>> score(["두 사람이 내일 만나기로 했다"], [["두 사람은 내일 만난다"]])["rouge1"]

A dialogue's score is the mean over its references; a data set's is the mean over
dialogues. ``rouge_sum`` = R1+R2+RL, ``competition_score`` = (R1+R2+RL)/3*100.
"""

from raysum.metrics._rouge import (
    ROUGE_KEYS,
    pairwise_rouge_f1,
    rouge_f1,
    score,
    score_dialogues,
)
from raysum.metrics._tokenize import (
    TAG_PATTERN,
    TOKENIZERS,
    KoreanTokenizer,
    clear_cache,
    set_kiwi_threads,
    tokenize,
    tokenize_many,
)

__all__ = [
    "ROUGE_KEYS",
    "TAG_PATTERN",
    "TOKENIZERS",
    "KoreanTokenizer",
    "set_kiwi_threads",
    "clear_cache",
    "pairwise_rouge_f1",
    "rouge_f1",
    "score",
    "score_dialogues",
    "tokenize",
    "tokenize_many",
]
