"""Log-probabilities of the generated tokens under the raw model distribution (no n-gram
blocking, no length penalty, no sampling temperature), taken from the generation itself.

Two logits processors bracket the ones `generate` builds (n-gram blocking, sequence bias,
forced eos, the seeded sampler): the first sees each step's raw scores and keeps their
log-softmax for that step only; the last sees the processed scores, takes each row's top
`width` tokens and keeps the raw log-probs of those. A step can only choose among them:
greedy search takes a row's best token, sampling the one token the sampler left finite,
beam search the best 2 × beams (one more per extra eos id) over all beams of a dialogue,
so at most that many of one row. After generation each token is looked up among the
candidates its step kept for the row it came from: the same row for greedy search and
sampling (their rows never reorder), `beam_indices` for beam search.

Memory: steps × rows × width × 12 bytes, where `output_scores` would keep steps × rows ×
vocabulary floats (31 GB for Qwen3-4B at 128 dialogues × 4 beams × 100 tokens).

A token not found there (a tie at the edge of the top `width`, or beam search choosing
among -inf scores) sends its batch to :func:`teacher_forced`: one forward pass over the
chosen sequences, chunked to bound the logits' memory, which gives the same numbers.
"""

from __future__ import annotations

import inspect

from transformers import LogitsProcessor

_CPU_LOGIT_FLOATS = 1 << 27  # logits scored at once by the teacher-forced pass on CPU (512 MiB in fp32)


class StepLogProbs:
    """The raw log-probs of each step's candidate tokens (one instance per generate call)."""

    def __init__(self, width: int):
        self.width = width
        self.tokens: list = []  # per step: (rows, width) candidate token ids
        self.values: list = []  # per step: (rows, width) their raw log-probs
        self._raw = None
        self.first, self.last = _RawScores(self), _Candidates(self)

    def lookup(self, new, parents=None):
        """(log-probs, found): the raw log-prob of each generated token of `new` (rows × n)
        and whether it was among its step's candidates; `parents` (rows × n) is the row
        each token was chosen in (beam search's `beam_indices`), default the row itself."""
        import torch

        rows, n = new.shape
        if len(self.tokens) < n:  # never seen: every token was chosen in a recorded step
            return torch.zeros(new.shape, device=new.device), torch.zeros(new.shape, dtype=torch.bool,
                                                                          device=new.device)
        if n == 0:
            return torch.zeros(new.shape, device=new.device), torch.ones(new.shape, dtype=torch.bool,
                                                                         device=new.device)
        tokens, values = torch.stack(self.tokens[:n]), torch.stack(self.values[:n])  # (n, R, width)
        steps = torch.arange(n, device=new.device)[None, :]
        if parents is None:
            parents = torch.arange(rows, device=new.device)[:, None].expand(rows, n)
        parents = parents.to(new.device).long().clamp(min=0)  # -1 past a beam's end: masked anyway
        match = tokens[steps, parents] == new[..., None]  # (rows, n, width)
        return torch.where(match, values[steps, parents], 0.0).sum(-1), match.any(-1)


class _RawScores(LogitsProcessor):
    """First in the list: the step's raw scores as log-probs (beam search hands over the
    log-softmax already; taking it again changes nothing)."""

    def __init__(self, owner: StepLogProbs):
        self.owner = owner

    def __call__(self, input_ids, scores):
        import torch

        self.owner._raw = torch.log_softmax(scores.float(), dim=-1)
        return scores


class _Candidates(LogitsProcessor):
    """Last in the list: the tokens the step can choose, with their raw log-probs."""

    def __init__(self, owner: StepLogProbs):
        self.owner = owner

    def __call__(self, input_ids, scores):
        owner = self.owner
        top = scores.topk(min(owner.width, scores.shape[-1]), dim=-1).indices
        owner.tokens.append(top)
        owner.values.append(owner._raw.gather(1, top))
        owner._raw = None
        return scores


def teacher_forced(model, batch: dict, sequences, new, mask, causal: bool):
    """Mean raw log-prob of the masked new tokens from one forward pass over the chosen
    sequences, in row chunks that bound the logits' memory."""
    import torch

    vocab = model.get_output_embeddings().weight.shape[0]
    rows = max(1, _logit_floats(new.device) // max(1, new.shape[1] * vocab))
    means = []
    for start in range(0, sequences.shape[0], rows):
        part = slice(start, start + rows)
        if causal:
            logits = _causal_logits(model, batch["attention_mask"][part], sequences[part], mask[part])
        else:
            logits = model(input_ids=batch["input_ids"][part], attention_mask=batch["attention_mask"][part],
                           decoder_input_ids=sequences[part, :-1]).logits
        token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, new[part].unsqueeze(-1)).squeeze(-1)
        weights = mask[part].float()
        means.append((token_logprobs * weights).sum(1) / weights.sum(1).clamp(min=1))
    return torch.cat(means)


def _logit_floats(device) -> int:
    """fp32 logits the teacher-forced pass holds at once: a quarter of the free GPU memory
    (the logits, their log-softmax), a fixed 512 MiB on CPU."""
    import torch

    if device.type != "cuda":
        return _CPU_LOGIT_FLOATS
    free, _ = torch.cuda.mem_get_info(device)
    return max(_CPU_LOGIT_FLOATS, int(free // 4 // 8))


def _causal_logits(model, prompt_mask, sequences, new_mask):
    """Logits predicting each new token, with the position ids `generate` used (left padding)."""
    import torch

    attention_mask = torch.cat([prompt_mask, new_mask.to(prompt_mask.dtype)], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    n_new = new_mask.shape[1]
    kwargs = {"logits_to_keep": n_new + 1} if _accepts(model, "logits_to_keep") else {}
    logits = model(input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False, **kwargs).logits
    return logits[:, -(n_new + 1):-1]


def _accepts(model, argument: str) -> bool:
    parameters = inspect.signature(model.forward).parameters
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
