"""The unit's `Trainer`: transformers' own loop (DeepSpeed, DDP, gradient accumulation,
AMP, exact resume), with the changes a summarization unit needs and nothing else.

    compute_loss  causal LMs: logits only where the loss is (the summary tokens)
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from transformers import Trainer

from raysum.models.prompts import IGNORE_INDEX


class UnitTrainer(Trainer):
    """`transformers.Trainer` for one training unit.

    Causal LMs compute the vocabulary head (hidden size x 128k-152k for Llama/Qwen) only
    at positions whose next token is a summary token: the prompt, the dialogue and any
    padding carry no loss (-100), and in a unit they are most of the tokens. Seq2seq models
    (BART) keep transformers' default loss: their decoder sees only the summary anyway.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_head_only = _takes_logits_to_keep(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of transformers' `ForCausalLMLoss` (labels shifted left by one; sum over
        label tokens / `num_items_in_batch` when the Trainer counts them for the model,
        else the mean over label tokens), from logits at the label positions only.

        `logits_to_keep` goes through the model's normal forward (so DDP/DeepSpeed/peft
        wrappers see it) as a boolean (rows, length) mask; the model slices the hidden
        states with it before `lm_head`, giving one row of logits per label token: exactly
        the label positions of each row, for a packed row and for padded rows alike (no
        union across rows is needed). The labels are not passed to the model."""
        if not self.loss_head_only or "labels" not in inputs or self.label_smoother is not None \
                or self.compute_loss_func is not None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        shift_labels = inputs.pop("shift_labels", None)
        if shift_labels is None:
            shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
        keep = shift_labels != IGNORE_INDEX
        if keeps_by_mask():
            outputs = model(**inputs, logits_to_keep=keep)
            logits = outputs.logits
        else:  # older transformers: positions kept in every row (one row when packed), then each row's own
            positions = keep.any(dim=0).nonzero().view(-1)
            outputs = model(**inputs, logits_to_keep=positions)
            logits = outputs.logits[keep[:, positions].to(outputs.logits.device)]
        targets = shift_labels[keep].to(logits.device)
        by_items = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        loss = F.cross_entropy(logits.float(), targets, reduction="sum" if by_items else "mean")
        if by_items:
            loss = loss / (num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch)
                           else num_items_in_batch)
            if self.args.average_tokens_across_devices:
                # as transformers' compute_loss: the counted items are summed over all processes
                loss_scale = self.accelerator.num_processes // self.get_tp_size()
                loss *= loss_scale if self.args.n_gpu <= 1 else self.args.n_gpu
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self):
        """Micro-batches by token budget when the unit planned them (`token_batches`, a
        `raysum.training.batching.TokenBudgetBatchSampler`); the Trainer's own otherwise."""
        batches = getattr(self, "token_batches", None)
        if batches is None:
            return super().get_train_dataloader()
        from raysum.training.batching import train_dataloader

        return train_dataloader(self, batches)


@functools.cache
def keeps_by_mask() -> bool:
    """Whether this transformers slices hidden states by a boolean (rows, length)
    `logits_to_keep` mask (`slice_logits_to_keep`); older versions take positions only."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    return "torch.bool" in inspect.getsource(slice_logits_to_keep)


def _takes_logits_to_keep(model) -> bool:
    """A causal LM (possibly wrapped by peft) whose forward accepts `logits_to_keep`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "is_encoder_decoder", False):
        return False
    return "logits_to_keep" in inspect.signature(base.forward).parameters
