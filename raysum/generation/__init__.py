"""Generation: one engine per unit that every pass goes through — length-sorted batches
by token budget, token counts and mean token log-probs taken on the way (the candidates'
raw material), seeded sampling."""

from raysum.generation.engine import Decoding, Generated, GenerationEngine, generate_summaries, prepare_model

__all__ = ["Decoding", "Generated", "GenerationEngine", "generate_summaries", "prepare_model"]
