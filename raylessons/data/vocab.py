"""Token <-> id mapping with fastai v1's construction rules, saved as JSON.

`Vocab.create` follows fastai v1 >= 1.0.53 (the final v1 rules):
- count tokens, keep `Counter.most_common(max_vocab)` (ties stay in first-seen order) with
  count >= min_freq (the `>=` of fastai >= 1.0.43; older releases used `>`);
- move or insert the special tokens at the front, in `TEXT_SPEC_TOK` order (>= 1.0.49, with `xxeos`);
- cut to max_vocab, and when shorter than max_vocab pad with `xxfake` to a multiple of 8 (>= 1.0.53).
The default min_freq=2 is that of fastai's factory methods (`TextDataBunch.from_*`); the data block
API's `NumericalizeProcessor` used min_freq=3, so pass it explicitly to reproduce that pipeline.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from raylessons.errors import DataError

from .tokenize import TEXT_SPEC_TOK

__all__ = ["Vocab", "FAKE_TOKEN"]

FAKE_TOKEN = "xxfake"
_FORMAT = "raylessons.vocab"


class _Stoi(dict):
    """str -> id; an unknown token maps to 0 (xxunk's id) without being added, unlike a defaultdict."""

    def __missing__(self, key: str) -> int:
        return 0


class Vocab:
    """The correspondence between tokens (`itos`) and ids (`stoi`, unknown -> 0 = xxunk)."""

    def __init__(self, itos: Sequence[str]):
        self.itos = list(itos)
        # later duplicates win (only the xxfake fillers repeat), as in fastai v1
        self.stoi = _Stoi({tok: i for i, tok in enumerate(self.itos)})

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {' '.join(self.itos[:12])} ...)"

    def numericalize(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids (unknown tokens -> 0)."""
        return [self.stoi[t] for t in tokens]

    def textify(self, ids: Iterable[int], sep: str = " ") -> str:
        """Map ids back to tokens joined by `sep`."""
        return sep.join(self.itos[int(i)] for i in ids)

    @classmethod
    def create(cls, tokens_lists: Iterable[Sequence[str]], max_vocab: int = 60000,
               min_freq: int = 2) -> "Vocab":
        """Build a vocab with fastai v1 (>= 1.0.53) rules: frequent first, specials in front, padded to 8."""
        freq = Counter(tok for toks in tokens_lists for tok in toks)
        itos = [tok for tok, count in freq.most_common(max_vocab) if count >= min_freq]
        for tok in reversed(TEXT_SPEC_TOK):
            if tok in itos:
                itos.remove(tok)
            itos.insert(0, tok)
        itos = itos[:max_vocab]
        if len(itos) < max_vocab:  # a multiple of 8 suits fp16 tensor cores
            itos += [FAKE_TOKEN] * (-len(itos) % 8)
        return cls(itos)

    def save(self, path: str | Path) -> Path:
        """Write the vocab as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": _FORMAT, "version": 1, "itos": self.itos}
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        """Read a vocab written by `save` (a bare JSON list of tokens is accepted too)."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"not a JSON vocab file: {e}", where=path) from e
        itos = payload.get("itos") if isinstance(payload, dict) else payload
        if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
            raise DataError("expected a JSON list of str tokens (or an object with key 'itos')", where=path)
        return cls(itos)
