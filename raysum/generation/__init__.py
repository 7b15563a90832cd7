"""Generation: summaries for many dialogues, batched by length, with token counts and
mean token log-probs (the candidates' raw material)."""

from raysum.generation.summaries import generate_summaries

__all__ = ["generate_summaries"]
