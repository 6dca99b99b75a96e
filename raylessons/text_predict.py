"""Text classification at inference: tokenize, numericalize, pad, forward, decode (learn.predict and Serve)."""
from __future__ import annotations

from pathlib import Path

import torch

from .data.labels import CategoryLabel
from .data.tokenize import Tokenizer
from .data.vocab import Vocab
from .device import default_device
from .errors import DataError
from .inference import load_export

__all__ = ["TextPredictor", "MAX_TOKENS"]

# the longest text a prediction reads, in tokens: the classifier's max_len (1400 in the lesson); longer texts
# are cut to their first MAX_TOKENS tokens, which bounds the CPU a single request can cost
MAX_TOKENS = 1400


class TextPredictor:
    """Tokenizer + vocab + classifier: `predict(text)` -> (label, index, probabilities)."""

    label = CategoryLabel  # its answers are a category label's
    kind = CategoryLabel.kind

    def __init__(self, model: torch.nn.Module, itos: list[str], classes: list[str], device: torch.device,
                 max_tokens: int = MAX_TOKENS, pad_idx: int = 1):
        self.model, self.device = model.eval(), torch.device(device)
        self.vocab, self.classes = Vocab(itos), list(classes)
        self.tokenizer, self.max_tokens, self.pad_idx = Tokenizer(), max_tokens, pad_idx

    @classmethod
    def from_learner(cls, learn) -> "TextPredictor":
        """The predictor of a trained (or loaded) text classifier learner."""
        meta = getattr(learn, "export_meta", None) or learn.data.export_meta()
        max_len = learn.model_meta.get("max_len", MAX_TOKENS)
        return cls(learn.model, meta["itos"], meta["classes"], learn.device, max_tokens=max_len)

    @classmethod
    def from_export(cls, dest: str | Path, device: str | None = None) -> "TextPredictor":
        """Load a classifier export directory (model.pt + meta.json with the itos); no Learner is built."""
        model, _, meta = load_export(dest)
        device = torch.device(device) if device is not None else default_device()
        max_len = meta["model"].get("max_len", MAX_TOKENS)
        return cls(model.to(device), meta["itos"], meta["classes"], device, max_tokens=max_len)

    def prepare(self, text: str) -> tuple[torch.Tensor, int]:
        """(token ids, at most max_tokens of them; the number of tokens before truncation)."""
        if not isinstance(text, str):
            raise DataError(f"expected a text (str), got {type(text).__name__}")
        if not text.strip():
            raise DataError("empty text: there is nothing to classify")
        ids = self.vocab.numericalize(self.tokenizer.process_text(text))
        return torch.tensor(ids[: self.max_tokens], dtype=torch.long), len(ids)

    @torch.inference_mode()
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Softmax probabilities (B, n_class) of a list of id tensors, padded at the start as in training."""
        longest = max(len(x) for x in xs)
        xb = torch.full((len(xs), longest), self.pad_idx, dtype=torch.long)
        for i, x in enumerate(xs):
            xb[i, longest - len(x):] = x
        self.model.reset()
        out = self.model(xb.to(self.device)).float()
        return self.label.activation(out).cpu()  # (B, n_class) probabilities

    def decode(self, row: torch.Tensor, threshold: float | None = None, size=None) -> tuple[str, int, torch.Tensor]:
        """(label, index, probabilities) of one softmax row."""
        return self.label.decode(row, self.classes)

    def predict(self, text: str) -> tuple[str, int, torch.Tensor]:
        """The label of one text."""
        return self.decode(self.forward([self.prepare(text)[0]])[0])
