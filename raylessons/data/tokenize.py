r"""fastai v1's text tokenizer: pre-rules, spaCy's blank English tokenizer, post-rules, cached and parallel.

The rules are ported from fastai v1 (final release, 1.0.61+; `fastai/text/transform.py` and
`_join_texts` in `fastai/text/data.py`), so the same text gives the same tokens as fastai v1 running
the same spaCy version (fastai v1 ran on spaCy 2.x; this project pins spaCy >= 3.7, whose English
tokenizer differs from 2.x only on rare edge cases).

Document wrapping follows fastai v1's `TokenizeProcessor` defaults: every text starts with `xxbos`
(include_bos=True), no `xxeos` (include_eos=False), and no `xxfld 1` (mark_fields=False: the data
block API the lesson uses, `TextList`, never turns it on for a single text column, and the lesson's
printed ids `[2, 18, ...]` show `xxbos` followed directly by a word). `mark_fields=True` gives
`xxbos xxfld 1 <text>` as in fastai v1.

Empty or space-only text becomes `['xxbos']`, exactly as in fastai v1 (the rules collapse the spaces
and spaCy keeps one trailing space as the last token's whitespace, not a token); other whitespace
survives as a token, as it does in fastai v1: `'\n'` gives `['xxbos', '\n ']`, `'<br /><br />'` a
`'\n \n '` token. Non-str items (fastai would `str()` them, turning NaN into 'nan') raise DataError.
"""
from __future__ import annotations

import gzip
import hashlib
import html
import json
import logging
import math
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from raylessons.errors import ConfigError, DataError

__all__ = [
    "UNK", "PAD", "BOS", "EOS", "FLD", "TK_MAJ", "TK_UP", "TK_REP", "TK_WREP", "TEXT_SPEC_TOK",
    "RULES_VERSION", "PRE_RULES", "POST_RULES",
    "fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces",
    "replace_all_caps", "deal_caps", "join_text",
    "Tokenizer", "tokenize_texts", "default_n_workers", "read_text_file",
]

log = logging.getLogger(__name__)

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_MAJ, TK_UP, TK_REP, TK_WREP = "xxmaj", "xxup", "xxrep", "xxwrep"
# fastai >= 1.0.49 order (xxeos included); vocab ids are these positions
TEXT_SPEC_TOK = [UNK, PAD, BOS, EOS, FLD, TK_MAJ, TK_UP, TK_REP, TK_WREP]

# Bump whenever a rule changes: it is part of the cache key, so stale caches are never reused.
RULES_VERSION = "fastai-v1-1.0.61/1"

_RE_SPACES2 = re.compile(r"  +")
_RE_REP = re.compile(r"(\S)(\1{3,})")  # one non-space char, then 3+ copies of it
_RE_WREP = re.compile(r"(\b\w+\W+)(\1{3,})")  # a word + separator, then 3+ copies of both
_RE_SPEC = re.compile(r"([/#\n])")
_RE_USELESS = re.compile(" {2,}")

# fix_html's literal replacements, in fastai v1's order (the order matters: '#39;' goes before
# 'amp;', so '&#39;' leaves a stray '&' exactly as fastai does).
_HTML_FIXES = (
    ("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"),
    ("\\n", "\n"), ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK),
    (" @.@ ", "."), (" @-@ ", "-"), (" @,@ ", ","), ("\\", " \\ "),
)


def fix_html(text: str) -> str:
    """Undo the HTML and wikitext escapes fastai v1 fixes, then unescape and collapse double spaces."""
    for old, new in _HTML_FIXES:
        text = text.replace(old, new)
    return _RE_SPACES2.sub(" ", html.unescape(text))


def replace_rep(text: str) -> str:
    """Replace a character repeated 4+ times by ` xxrep n c `."""
    def _sub(m: re.Match) -> str:
        c, cc = m.groups()
        return f" {TK_REP} {len(cc) + 1} {c} "
    return _RE_REP.sub(_sub, text)


def replace_wrep(text: str) -> str:
    """Replace a word repeated 4+ times by ` xxwrep n word `."""
    def _sub(m: re.Match) -> str:
        c, cc = m.groups()
        # c keeps its separator (e.g. 'very '), as in fastai v1
        return f" {TK_WREP} {len(cc.split()) + 1} {c} "
    return _RE_WREP.sub(_sub, text)


def spec_add_spaces(text: str) -> str:
    """Put spaces around `/`, `#` and newlines."""
    return _RE_SPEC.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    """Collapse runs of 2+ spaces into one."""
    return _RE_USELESS.sub(" ", text)


def replace_all_caps(tokens: list[str]) -> list[str]:
    """Lower-case ALL-CAPS tokens (length > 1) and put `xxup` before each."""
    out: list[str] = []
    for t in tokens:
        if t.isupper() and len(t) > 1:
            out += [TK_UP, t.lower()]
        else:
            out.append(t)
    return out


def deal_caps(tokens: list[str]) -> list[str]:
    """Drop empty tokens, put `xxmaj` before Capitalised ones and lower-case every token."""
    out: list[str] = []
    for t in tokens:
        if t == "":
            continue
        if t[0].isupper() and len(t) > 1 and t[1:].islower():
            out.append(TK_MAJ)
        out.append(t.lower())
    return out


PRE_RULES: list[Callable[[str], str]] = [
    fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
POST_RULES: list[Callable[[list[str]], list[str]]] = [replace_all_caps, deal_caps]


def join_text(text: str, *, include_bos: bool = True, include_eos: bool = False,
              mark_fields: bool = False) -> str:
    """Wrap one text as fastai v1's `_join_texts` does for a single field (before the rules run)."""
    bos = f"{BOS} " if include_bos else ""
    out = f"{bos}{FLD} 1 {text}" if mark_fields else f"{bos}{text}"
    return f"{out} {EOS}" if include_eos else out


class Tokenizer:
    """fastai v1's Tokenizer: wrap, pre-rules, spaCy blank-English tokens, post-rules (one process)."""

    def __init__(self, lang: str = "en", *, include_bos: bool = True, include_eos: bool = False,
                 mark_fields: bool = False):
        self.lang = lang
        self.include_bos, self.include_eos, self.mark_fields = include_bos, include_eos, mark_fields
        self._nlp = None  # spaCy is built lazily, once per process (never pickled)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_nlp": None}  # each worker process builds its own spaCy

    def __repr__(self) -> str:
        return (f"Tokenizer(lang={self.lang!r}, include_bos={self.include_bos}, "
                f"include_eos={self.include_eos}, mark_fields={self.mark_fields})")

    @property
    def signature(self) -> str:
        """A string naming everything that changes the output (rules, options, spaCy version)."""
        import spacy
        return f"{RULES_VERSION}|spacy-{spacy.__version__}|{self!r}"

    def _spacy(self):
        if self._nlp is None:
            import spacy
            from spacy.symbols import ORTH
            self._nlp = spacy.blank(self.lang)
            for tok in TEXT_SPEC_TOK:  # never split a special token
                self._nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
        return self._nlp

    def process_text(self, text: str) -> list[str]:
        """Tokenize one text; a non-str raises DataError."""
        if not isinstance(text, str):
            raise DataError(f"expected a str to tokenize, got {type(text).__name__}: {text!r:.60}")
        text = join_text(text, include_bos=self.include_bos, include_eos=self.include_eos,
                         mark_fields=self.mark_fields)
        for rule in PRE_RULES:
            text = rule(text)
        tokens = [t.text for t in self._spacy().tokenizer(text)]
        for rule in POST_RULES:
            tokens = rule(tokens)
        return tokens

    def process_all(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokenize `texts` in this process; a non-str item raises DataError."""
        _check_texts(texts)
        return [self.process_text(t) for t in texts]


def _check_texts(texts: Sequence[str]) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"expected a str to tokenize, got {type(t).__name__}: {t!r:.60}",
                            where=f"texts[{i}]")


# --- parallel, cached tokenization -------------------------------------------------------------

_WORKER_TOKENIZER: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _work_chunk(chunk: list[str]) -> list[list[str]]:
    return _WORKER_TOKENIZER.process_all(chunk)


def _pool_context():
    """fork, unless Ray runs in this process: a forked copy of a Ray driver or worker inherits its gRPC threads
    and crashes when it exits (the pool then breaks), so the workers come from a fresh forkserver instead."""
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("fork")


def default_n_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _chunks(texts: Sequence[str], n_workers: int, max_chunk: int = 10_000) -> list[list[str]]:
    # ~4 chunks per worker balances uneven text lengths; 10k is fastai's chunksize
    size = max(1, min(max_chunk, math.ceil(len(texts) / (4 * n_workers))))
    return [list(texts[i:i + size]) for i in range(0, len(texts), size)]


def _cache_key(texts: Sequence[str], tokenizer: Tokenizer) -> str:
    h = hashlib.sha256(tokenizer.signature.encode())
    for t in texts:  # length prefix so ['ab', 'c'] and ['a', 'bc'] differ
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def _read_cache(path: Path, n: int) -> list[list[str]] | None:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out = [json.loads(line) for line in f]
    except (OSError, EOFError, ValueError) as e:
        log.warning("%s: unreadable token cache (%s); tokenizing again", path, e)
        return None
    if len(out) != n:
        log.warning("%s: token cache holds %d texts, expected %d; tokenizing again", path, len(out), n)
        return None
    return out


def _write_cache(path: Path, tokens: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        for toks in tokens:
            f.write(json.dumps(toks, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # atomic: a reader never sees a half-written cache


def tokenize_texts(texts: Sequence[str], n_workers: int | None = None, cache_dir: Path | None = None,
                   *, tokenizer: Tokenizer | None = None) -> list[list[str]]:
    """Tokenize `texts` on `n_workers` processes (default: all cores), cached under `cache_dir`."""
    tokenizer = tokenizer or Tokenizer()
    texts = list(texts)
    _check_texts(texts)
    if n_workers is None:
        n_workers = default_n_workers()
    if n_workers < 1:
        raise ConfigError(f"n_workers must be >= 1, got {n_workers}")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"tokens-{_cache_key(texts, tokenizer)}.jsonl.gz"
        if path.exists() and (cached := _read_cache(path, len(texts))) is not None:
            return cached
    n_workers = min(n_workers, max(1, len(texts)))
    if n_workers == 1:
        tokens = tokenizer.process_all(texts)
    else:
        with ProcessPoolExecutor(n_workers, mp_context=_pool_context(), initializer=_init_worker,
                                 initargs=(tokenizer,)) as pool:
            tokens = [toks for chunk in pool.map(_work_chunk, _chunks(texts, n_workers)) for toks in chunk]
    if path is not None:
        _write_cache(path, tokens)
    return tokens


def read_text_file(path: str | Path) -> tuple[str, bool]:
    """Read a UTF-8 text file (newlines normalised as text mode does); flag True if it had invalid bytes."""
    raw = Path(path).read_bytes()
    try:
        text, bad = raw.decode("utf-8"), False
    except UnicodeDecodeError as e:
        text, bad = raw.decode("utf-8", errors="replace"), True
        log.warning("%s: invalid UTF-8 (%s); bad bytes replaced by U+FFFD", path, e.reason)
    # fastai v1 reads in text mode, which turns \r\n and \r into \n
    return text.replace("\r\n", "\n").replace("\r", "\n"), bad
