"""fastai v1 tokenizer rules on spaCy: expected tokens written out by hand from the rules."""
from __future__ import annotations

import gzip
import logging
import sys

import pytest

from raylessons.errors import ConfigError, DataError
from raylessons.data import tokenize as tk
from raylessons.data.tokenize import TEXT_SPEC_TOK, Tokenizer, read_text_file, tokenize_texts


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def test_special_tokens_order():
    assert TEXT_SPEC_TOK == "xxunk xxpad xxbos xxeos xxfld xxmaj xxup xxrep xxwrep".split()


@pytest.mark.parametrize("text, expected", [
    # '#39;' is replaced before 'amp;' and leaves the '&' behind: fastai v1's own quirk
    ("Tom &amp; Jerry&#39;s", "Tom && Jerry&'s"),
    ("caf&eacute; &lt;3 a\\nb", "café <3 a\nb"),
    ("one<br />two &quot;x", "one\ntwo &'x"),
    ("a  nbsp;b", "a b"),
])
def test_fix_html(text, expected):
    assert tk.fix_html(text) == expected


def test_string_rules():
    assert tk.replace_rep("sooooo!") == "s xxrep 5 o !"
    assert tk.replace_rep("cool") == "cool"  # 'oo' is below the 4-repeat threshold
    assert tk.replace_wrep("very very very very good") == " xxwrep 4 very  good"
    assert tk.replace_wrep("very very very good") == "very very very good"
    assert tk.spec_add_spaces("7/10#1\n") == "7 / 10 # 1 \n "
    assert tk.rm_useless_spaces("a   b  c d") == "a b c d"


def test_token_rules():
    assert tk.replace_all_caps(["THE", "I", "Ok", "OK"]) == ["xxup", "the", "I", "Ok", "xxup", "ok"]
    assert tk.deal_caps(["Hello", "", "A", "McDonald", "iPhone", "x"]) == [
        "xxmaj", "hello", "a", "mcdonald", "iphone", "x"]


@pytest.mark.parametrize("text, expected", [
    ("I loved it!<br /><br />The ACTING was sooooo good.",
     ["xxbos", "i", "loved", "it", "!", "\n \n ", "xxmaj", "the", "xxup", "acting", "was",
      "s", "xxrep", "5", "o", "good", "."]),
    ("Tom &amp; Jerry", ["xxbos", "xxmaj", "tom", "&", "&", "xxmaj", "jerry"]),
    ("caf&eacute; &lt;3", ["xxbos", "café", "<3"]),
    ("THIS IS GREAT", ["xxbos", "xxup", "this", "xxup", "is", "xxup", "great"]),
    ("McDonald iPhone Hello A OK.",
     ["xxbos", "mcdonald", "iphone", "xxmaj", "hello", "a", "xxup", "ok", "."]),
    ("very very very very good", ["xxbos", "xxwrep", "4", "very", "good"]),
    ("no!!!!", ["xxbos", "no", "xxrep", "4", "!"]),
    ("Don't, it isn't.", ["xxbos", "xxmaj", "do", "n't", ",", "it", "is", "n't", "."]),
    ("Rated 7/10 in 2019, $3.50 #1",
     ["xxbos", "xxmaj", "rated", "7", "/", "10", "in", "2019", ",", "$", "3.50", "#", "1"]),
    ("Loved it 😀😀😀😀", ["xxbos", "xxmaj", "loved", "it", "xxrep", "4", "😀"]),
    ("So good😀", ["xxbos", "xxmaj", "so", "good", "😀"]),
    ("a <unk> b", ["xxbos", "a", "xxunk", "b"]),
    ("", ["xxbos"]),
    ("   ", ["xxbos"]),
    ("\n", ["xxbos", "\n "]),
])
def test_tricky_texts(tok, text, expected):
    assert tok.process_text(text) == expected


def test_fields_and_eos():
    assert Tokenizer(mark_fields=True, include_eos=True).process_text("Hi") == [
        "xxbos", "xxfld", "1", "xxmaj", "hi", "xxeos"]
    assert Tokenizer(include_bos=False).process_text("Hi") == ["xxmaj", "hi"]


def test_non_str_raises(tok):
    with pytest.raises(DataError, match=r"texts\[1\].*NoneType"):
        tok.process_all(["fine", None])
    with pytest.raises(DataError, match=r"texts\[0\].*float"):
        tokenize_texts([float("nan")], n_workers=1)
    with pytest.raises(DataError, match="bytes"):
        tok.process_text(b"raw bytes")


def _texts(n: int) -> list[str]:
    words = ["Great", "FILM", "sooooo", "dull", "<br />", "not", "good", "&amp;", "it's", "!!!!"]
    return [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(5 + i % 9)) for i in range(n)]


def test_parallel_equals_serial(tok):
    texts = _texts(60)
    assert tokenize_texts(texts, n_workers=2) == tok.process_all(texts)
    assert tokenize_texts([], n_workers=2) == []
    with pytest.raises(ConfigError, match="n_workers"):
        tokenize_texts(texts, n_workers=0)


def test_workers_come_from_a_forkserver_when_ray_runs_in_this_process(tok, monkeypatch):
    """A forked copy of a Ray driver crashes on exit (it inherits Ray's gRPC threads), breaking the pool; with Ray
    initialized here the pool's workers start from a forkserver and still give the serial tokens."""
    import types

    assert tk._pool_context().get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: True))
    assert tk._pool_context().get_start_method() == "forkserver"
    texts = _texts(40)
    assert tokenize_texts(texts, n_workers=2) == tok.process_all(texts)


def test_cache_hit_skips_tokenizing(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Tokenizer.process_text

    def counting(self, text):
        calls["n"] += 1
        return original(self, text)

    monkeypatch.setattr(Tokenizer, "process_text", counting)
    texts = _texts(12)
    first = tokenize_texts(texts, n_workers=1, cache_dir=tmp_path)
    assert calls["n"] == 12
    assert len(list(tmp_path.glob("tokens-*.jsonl.gz"))) == 1
    second = tokenize_texts(texts, n_workers=1, cache_dir=tmp_path)
    assert second == first and calls["n"] == 12  # served from disk
    third = tokenize_texts(texts[:-1] + ["changed"], n_workers=1, cache_dir=tmp_path)
    assert third[-1] == ["xxbos", "changed"] and calls["n"] == 24  # new texts, new key
    other = tokenize_texts(texts, n_workers=1, cache_dir=tmp_path, tokenizer=Tokenizer(include_eos=True))
    assert other[0][-1] == "xxeos" and calls["n"] == 36  # options are part of the key


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    texts = _texts(5)
    expected = tokenize_texts(texts, n_workers=1, cache_dir=tmp_path)
    (path,) = tmp_path.glob("tokens-*.jsonl.gz")
    with gzip.open(path, "wt") as f:
        f.write('["xxbos"]\n')  # one line for five texts
    with caplog.at_level(logging.WARNING):
        assert tokenize_texts(texts, n_workers=1, cache_dir=tmp_path) == expected
    assert "expected 5" in caplog.text


def test_read_text_file(tmp_path, caplog):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_bytes("café\r\nline".encode())
    bad.write_bytes(b"caf\xe9 ok")
    with caplog.at_level(logging.WARNING):
        assert read_text_file(good) == ("café\nline", False)
        assert caplog.text == ""
        assert read_text_file(bad) == ("caf\ufffd ok", True)
    assert "bad.txt" in caplog.text and "invalid UTF-8" in caplog.text
