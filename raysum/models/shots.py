"""Few-shot examples for the causal models' prompts, picked by similarity.

A :class:`ShotPool` holds one unit's training part (dialogue, summary, fname): the only
place its examples come from, so a held-out fold, dev and test never show a summary in
a prompt. For each dialogue it picks the ``k`` pool rows most similar to it by TF-IDF
cosine similarity over character 2-3-grams (scikit-learn; Korean words inflect, so
characters match better than whitespace words), most similar first, ties by pool order.
A training dialogue never gets itself, nor a row augmented from it (fname
``<source>#aug-...``), as its example: its own summary would be in its prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AUGMENTED = "#aug-"


def source_fname(fname: str) -> str:
    """The training row an augmented row was made from (itself for an original row)."""
    return str(fname).split(AUGMENTED, 1)[0]


class ShotPool:
    """A unit's training examples, indexed for similarity search."""

    def __init__(self, dialogues: Sequence[str], summaries: Sequence[str], fnames: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not len(dialogues):
            raise ValueError("a few-shot pool needs at least one training example")
        self.dialogues, self.summaries = [str(d).strip() for d in dialogues], [str(s).strip() for s in summaries]
        self.sources = np.array([source_fname(f) for f in fnames], dtype=object)
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform(self.dialogues)

    def pick(self, dialogues: Sequence[str], k: int, fnames: Sequence[str] | None = None) -> list[list[tuple[str, str]]]:
        """Per dialogue, its ``k`` most similar pool examples as (dialogue, summary); with
        ``fnames`` (dialogues of the pool itself), never a row of the same source."""
        if not len(dialogues):
            return []
        similarity = (self.vectorizer.transform([str(d).strip() for d in dialogues]) @ self.matrix.T).toarray()
        if fnames is not None:
            own = np.array([source_fname(f) for f in fnames], dtype=object)
            similarity[own[:, None] == self.sources[None, :]] = -np.inf
        out = []
        for row in similarity:
            order = np.lexsort((np.arange(len(row)), -row))  # most similar first, ties by pool order
            chosen = [i for i in order[:k] if np.isfinite(row[i])]
            out.append([(self.dialogues[i], self.summaries[i]) for i in chosen])
        return out
