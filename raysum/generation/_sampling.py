"""Sampling that does not depend on the batch.

A sampled decoding setting draws each dialogue's tokens with noise keyed by (the
setting's seed, the dialogue's prompt ids, the step, the token id) instead of the global
random stream, so a dialogue gets the same summary whatever batch, token budget or input
order it is generated in, and a rerun gives the same candidates.

The sampler is a logits processor after the ones `generate` builds (n-gram blocking,
forced eos): it applies temperature and top-p with transformers' own warpers (what
`generate(do_sample=True)` applies), draws the token by the Gumbel-max trick (the argmax
of scores + Gumbel noise is a draw from softmax(scores)) and leaves only that token
finite, so `generate`'s greedy search takes it. The noise comes from a 32-bit integer
hash (24 bits of it per uniform), computed on the device for all rows and tokens at once.
"""

from __future__ import annotations

import struct
import zlib

from transformers import LogitsProcessor

_MASK = 0xFFFFFFFF


def row_key(seed: int, ids: list[int]) -> int:
    """A 32-bit key of one dialogue's prompt ids under ``seed``."""
    return zlib.crc32(struct.pack(f"<{len(ids)}q", *ids), zlib.crc32(struct.pack("<q", seed)))


def setting_seed(seed: int, label: str) -> int:
    """The seed a decoding setting samples with: the unit's seed and the setting's label."""
    return zlib.crc32(f"{seed}:{label}".encode())


class SeededSampler(LogitsProcessor):
    """Temperature, top-p, then one keyed draw per row; only the drawn token stays finite."""

    def __init__(self, temperature: float, top_p: float, keys):
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.keys = keys  # (rows,) int64, one per dialogue of the batch
        self.step = 0

    def __call__(self, input_ids, scores):
        import torch

        for warper in self.warpers:
            scores = warper(input_ids, scores)
        noise = gumbel(self.keys.to(scores.device), self.step, scores.shape[-1])
        choice = (scores.float() + noise).argmax(dim=-1, keepdim=True)
        self.step += 1
        return torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)


def gumbel(keys, step: int, vocab: int):
    """(rows, vocab) standard Gumbel noise, a pure function of (key, step, token id)."""
    import torch

    base = _mix(keys.long() ^ _mix(torch.full_like(keys.long(), (step * 0x9E3779B9 + 0x7F4A7C15) & _MASK)))
    tokens = (torch.arange(vocab, device=keys.device, dtype=torch.long) * 0x9E3779B1) & _MASK
    bits = _mix(base[:, None] ^ tokens[None, :]) >> 8  # 24 bits: exact in float32
    uniform = (bits.float() + 0.5) / float(1 << 24)
    return -torch.log(-torch.log(uniform))


def _mix(x):
    """A 32-bit integer hash (lowbias32) on int64 tensors holding values below 2**32; the
    products stay below 2**59, so nothing overflows."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    return (x >> 16) ^ x
