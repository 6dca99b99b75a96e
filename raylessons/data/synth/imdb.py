"""An IMDB look-alike whose sentiment needs word order: negation, contrast and decoys.

Layout written by `synth(out)` (fastai's IMDB repackaging; ids count per folder from 0):
    out/README
    out/train/pos/<id>_<rating>.txt   ratings 7-10      out/train/neg/<id>_<rating>.txt   ratings 1-4
    out/test/pos/...                  out/test/neg/...
    out/unsup/<id>_0.txt              unlabelled reviews (both polarities, half each on average)
    out/imdb_sample/texts.csv         columns label,text,is_valid; label positive/negative,
                                      is_valid False for the first 80% of rows, True for the last 20%

How a review is built: its label L is shown by several opinion sentences (each says L with
probability `P_AGREE`, otherwise the opposite) and a closing (sometimes opening) verdict sentence that
always says L. A sentence's polarity comes from its *last* clause ("the acting was great, but the plot
was dull" is negative), and a clause's polarity is its sentiment word's, flipped by a negation
("hardly worth it", "never boring") but not by a decoy ("could not have been more boring", "I can't
recommend it enough"). Each sentiment word matches its clause's polarity with probability only
0.5 + `WORD_BIAS`, and the first clause of a contrast leans the other way, so the same words appear
in both classes and a bag of words stays weak while an order-aware reader gets every review right.
WORD_BIAS is 0.3, not smaller, so that a language model can learn which words are positive from their
contexts (a review's words lean its way); at 0.15 the LM embeddings of "great" and "dull" stayed nearly
equal (cosine ~0.97) and a classifier on them plateaued at chance for epochs (the notes of issue 4).
Neutral plot sentences, HTML (`<br /><br />`, `&amp;`, `&#39;`, `&quot;`), ALL CAPS, Capitalised
words, stretched words (`sooooo`), repeated words and varied lengths (some several hundred words)
make the text look like IMDB.

`synth_corpus(out)` writes a general English-like corpus for language-model pretraining (the
WikiText-103 stand-in): `out/train/<id>.txt` (90% of documents), `out/valid/<id>.txt` (10%) and
`out/README`; one document per file, paragraphs separated by blank lines, no HTML. Documents are
encyclopedia-style descriptions of towns, rivers, people and books mixed with opinions about
books, meals and journeys written with the same negation and contrast grammar.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import pandas as pd

from raylessons.errors import ConfigError

__all__ = [
    "synth", "synth_corpus", "add_cli_arguments", "make_review",
    "POS_WORDS", "NEG_WORDS", "NEGATORS", "DECOYS", "CONTRASTS", "VERDICT_MARKERS", "P_AGREE", "WORD_BIAS",
]

P_AGREE = 0.8  # chance that a non-verdict opinion sentence agrees with the review's label
WORD_BIAS = 0.3  # a sentiment word matches its clause's polarity with probability 0.5 + WORD_BIAS

# sentiment words by polarity (+1 / -1); each category has the same number of each polarity
ADJ = {1: "great good brilliant wonderful superb excellent enjoyable gripping moving funny clever beautiful "
          "charming engaging fascinating delightful impressive memorable entertaining touching".split(),
       -1: "bad terrible awful dull boring weak poor tedious forgettable clumsy lame predictable pointless "
           "dreadful bland horrible mediocre painful messy silly".split()}
NOUN = {1: ["a masterpiece", "a gem", "a real treat", "a joy to watch", "worth every minute"],
        -1: ["a disaster", "a mess", "a waste of time", "a real chore", "a huge letdown"]}
VERB = {1: [("loved", "love"), ("enjoyed", "enjoy"), ("liked", "like"), ("adored", "adore")],
        -1: [("hated", "hate"), ("disliked", "dislike"), ("regretted", "regret"), ("resented", "resent")]}
POS_WORDS = set(ADJ[1]) | {"masterpiece", "gem", "treat", "joy", "worth", "loved", "love", "enjoyed", "enjoy",
                           "liked", "like", "adored", "adore"}
NEG_WORDS = set(ADJ[-1]) | {"disaster", "mess", "waste", "chore", "letdown", "hated", "hate", "disliked",
                            "dislike", "regretted", "regret", "resented", "resent"}

# {a}: aspect, {w}: sentiment word; NEGATED flips the word's polarity, PLAIN and DECOYS keep it.
# NEGATORS, DECOYS, CONTRASTS and VERDICT_MARKERS are public so checks can read reviews in order.
PLAIN = ["{a} was {i}{w}", "{a} felt {i}{w}", "I found {a} {i}{w}", "{a} is {i}{w}", "{a} was just {w}"]
NEGATED = ["{a} was not {w}", "{a} wasn't {w}", "{a} was never {w}", "{a} was hardly {w}",
           "{a} was far from {w}", "{a} was anything but {w}", "{a} was by no means {w}",
           "I would not call {a} {w}", "nobody could call {a} {w}", "{a} was not particularly {w}",
           "{a} was not all that {w}", "{a} did not feel {w} at all", "{a} was NOT {w}"]
DECOYS = ["{a} could not have been more {w}", "I have never seen anything so {w} as {a}",
          "there is no denying that {a} was {w}", "{a} was not just {w} , it was {i}{w2}"]
NEGATORS = {"not", "n't", "never", "hardly", "far", "anything", "no", "nobody"}
CONTRASTS = ["{A} , but {B}", "{A} ; however , {B}", "although {A} , {B}", "while {A} , {B}", "{A} , yet {B}",
             "sure , {A} , but {B}"]
VERDICT_MARKERS = ["overall ,", "all in all ,", "in the end ,", "to sum up ,", "bottom line :", "in short ,"]
INTENS = ["really ", "very ", "truly ", "extremely ", "incredibly ", "quite ", "genuinely ", "absolutely ",
          "so ", "sooooo ", "reallyyyy ", "very very very very "]
ASPECTS = ["the acting", "the plot", "the script", "the dialogue", "the soundtrack", "the score",
           "the cinematography", "the pacing", "the direction", "the ending", "the lead performance",
           "the special effects", "the editing", "the story", "the humor", "the camera work", "the casting",
           "the final act", "the opening scene", "the villain"]
FILM = ["this movie", "this film", "the film", "the movie", "this picture", "it"]

FIRST = ("john mary peter susan david laura michael anna robert emma james olivia daniel sarah paul "
         "kate").split()
LAST = "smith jones brown taylor wilson evans thomas roberts walker wright hall green baker hill".split()
JOBS = "detective teacher nurse farmer soldier lawyer painter pilot chef journalist doctor student".split()
PLACES = ["London", "Paris", "a small town", "New York", "a farm", "Chicago", "Tokyo", "the desert",
          "a lighthouse", "Berlin", "a boarding school", "Rome"]
GOALS = ["tries to find a missing sister", "falls in love with a stranger", "plans a robbery",
         "returns home after the war", "investigates a series of murders", "opens a restaurant",
         "searches for a lost treasure", "fights to save the family farm", "joins a travelling circus",
         "keeps a dangerous secret", "travels across the country", "runs for mayor"]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"


def _filler(rng: random.Random) -> str:
    """A neutral sentence: plot, cast, trivia (HTML entities appear here, as on IMDB)."""
    n1, n2 = _name(rng), _name(rng)
    return rng.choice([
        f"The film follows {n1} , a {rng.choice(JOBS)} in {rng.choice(PLACES)} who {rng.choice(GOALS)} .",
        f"{n1} plays a {rng.choice(JOBS)} who {rng.choice(GOALS)} , while {n2} {rng.choice(GOALS)} .",
        f"It was directed by {n1} in {rng.randint(1950, 2018)} and shot in {rng.choice(PLACES)} .",
        f"{n1} &amp; {n2} star as two {rng.choice(JOBS)}s who meet in {rng.choice(PLACES)} .",
        f"The story is based on {n1}&#39;s novel &quot;{rng.choice(GOALS).title()}&quot; .",
        f"I watched it with my {rng.choice(['brother', 'wife', 'friends', 'dad', 'kids'])} last "
        f"{rng.choice(['night', 'week', 'sunday', 'year'])} .",
        f"It runs about {rng.randint(80, 190)} minutes and the second half takes place in "
        f"{rng.choice(PLACES)} .",
        f"In one scene {n1} {rng.choice(GOALS)} and {n2} has to decide what to do next .",
    ])


def _adj(rng: random.Random, w: int) -> str:
    word = rng.choice(ADJ[w])
    return word.upper() if rng.random() < 0.08 else word  # shouting, as real reviews do


def _clause(rng: random.Random, s: int, about: str | None = None) -> str:
    """One clause of polarity `s` whose sentiment word has polarity s with probability 0.5 + WORD_BIAS."""
    w = s if rng.random() < 0.5 + WORD_BIAS else -s
    a = about or rng.choice(ASPECTS)
    i = rng.choice(INTENS) if rng.random() < 0.35 else ""
    if w != s:
        return rng.choice(NEGATED).format(a=a, w=_adj(rng, w))
    if rng.random() < 0.25:
        return rng.choice(DECOYS).format(a=a, w=_adj(rng, w), i=i, w2=_adj(rng, w))
    return rng.choice(PLAIN).format(a=a, w=_adj(rng, w), i=i)


def _verdict_clause(rng: random.Random, s: int) -> str:
    """A clause about the whole film: adjective, noun or verb, maybe negated, with polarity `s`."""
    film = rng.choice(FILM)
    kind = rng.random()
    if kind < 0.4:
        return _clause(rng, s, about=film)
    w = s if rng.random() < 0.5 + WORD_BIAS else -s
    if kind < 0.7:
        noun = rng.choice(NOUN[w])
        negator = rng.choice(["not", "hardly", "never"])
        return f"{film} was {noun}" if w == s else f"{film} was {negator} {noun}"
    past, base = rng.choice(VERB[w])
    if w == s:
        return rng.choice([f"I {past} {film}", f"I really {past} {film}",
                           f"I can't say I did not {base} {film}"])  # double negation keeps the polarity
    return rng.choice([f"I did not {base} {film}", f"I didn't {base} {film} at all",
                       f"I never {past} {film}"])


def _sentence(rng: random.Random, s: int) -> str:
    """An opinion sentence of polarity `s`: one clause, a contrast (last clause decides) or a pair."""
    r = rng.random()
    if r < 0.5:
        body = _clause(rng, s)
    elif r < 0.88:
        body = rng.choice(CONTRASTS).format(A=_clause(rng, -s), B=_clause(rng, s))
    else:
        body = f"{_clause(rng, s)} and {_clause(rng, s)}"
    return _finish(rng, body)


def _finish(rng: random.Random, body: str) -> str:
    if rng.random() < 0.03:
        return body.upper() + " !!!!"
    end = rng.choice([" .", " .", " .", " !", " !!!!", " ..."])
    return _cap(body) + end


def make_review(rng: random.Random, label: int) -> str:
    """One review of polarity `label` (+1 or -1) as raw IMDB-style text with HTML."""
    size = rng.random()
    n_op, n_fill = ((rng.randint(2, 4), rng.randint(1, 3)) if size < 0.6 else
                    (rng.randint(4, 8), rng.randint(3, 8)) if size < 0.9 else
                    (rng.randint(8, 14), rng.randint(14, 30)))
    sents = [_sentence(rng, label if rng.random() < P_AGREE else -label) for _ in range(n_op)]
    sents += [_filler(rng) for _ in range(n_fill)]
    rng.shuffle(sents)
    verdict = _finish(rng, f"{rng.choice(VERDICT_MARKERS)} {_verdict_clause(rng, label)}")
    if rng.random() < 0.15:
        sents.insert(0, verdict)
    else:
        sents.append(verdict)
    paragraphs, i = [], 0
    while i < len(sents):
        k = rng.randint(2, 6)
        paragraphs.append(" ".join(sents[i:i + k]))
        i += k
    return "<br /><br />".join(paragraphs)


def _labels(n: int, rng: random.Random) -> list[int]:
    labels = [1] * (n // 2) + [-1] * (n - n // 2)
    rng.shuffle(labels)
    return labels


def _write_split(root: Path, n: int, rng: random.Random) -> None:
    counts = {1: 0, -1: 0}
    for label in _labels(n, rng):
        folder, rating = ("pos", rng.randint(7, 10)) if label == 1 else ("neg", rng.randint(1, 4))
        path = root / folder / f"{counts[label]}_{rating}.txt"
        path.write_text(make_review(rng, label), encoding="utf-8")
        counts[label] += 1


def synth(out: Path, *, n_train: int = 2000, n_test: int = 2000, n_unsup: int = 1000, n_sample: int = 500,
          seed: int = 0) -> Path:
    """Write the IMDB look-alike (train/test/unsup folders and imdb_sample/texts.csv) under `out`."""
    for name, n in dict(n_train=n_train, n_test=n_test, n_unsup=n_unsup, n_sample=n_sample).items():
        if n < 0:
            raise ConfigError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    for d in ("train/pos", "train/neg", "test/pos", "test/neg", "unsup", "imdb_sample"):
        (out / d).mkdir(parents=True, exist_ok=True)
    # one random stream per part (str seeds hash deterministically), so sizes don't shift other parts
    _write_split(out / "train", n_train, random.Random(f"imdb-train-{seed}"))
    _write_split(out / "test", n_test, random.Random(f"imdb-test-{seed}"))
    rng = random.Random(f"imdb-unsup-{seed}")
    for i in range(n_unsup):
        (out / "unsup" / f"{i}_0.txt").write_text(make_review(rng, rng.choice([1, -1])), encoding="utf-8")
    rng = random.Random(f"imdb-sample-{seed}")
    labels = _labels(n_sample, rng)
    n_valid = round(0.2 * n_sample)
    pd.DataFrame({"label": ["positive" if y == 1 else "negative" for y in labels],
                  "text": [make_review(rng, y) for y in labels],
                  "is_valid": [i >= n_sample - n_valid for i in range(n_sample)]}
                 ).to_csv(out / "imdb_sample" / "texts.csv", index=False)
    (out / "README").write_text(
        f"Generated IMDB look-alike (raylessons.data.synth.imdb, seed={seed}): "
        f"{n_train} train, {n_test} test, "
        f"{n_unsup} unsup reviews and a {n_sample}-row imdb_sample. Not real data.\n", encoding="utf-8")
    return out


def _corpus_doc(rng: random.Random) -> str:
    """An encyclopedia-like document with some opinions in the reviews' grammar (no HTML)."""
    topics = ["the book", "the meal", "the journey", "the museum", "the concert", "the hotel"]
    sents = []
    for _ in range(rng.randint(4, 30)):
        r, n = rng.random(), _name(rng)
        if r < 0.35:
            about = rng.choice(topics)
            sents.append(_finish(rng, _clause(rng, rng.choice([1, -1]), about=about)))
        elif r < 0.5:
            sents.append(_sentence(rng, rng.choice([1, -1])))
        elif r < 0.75:
            sents.append(f"{_cap(rng.choice(PLACES))} is a place where {n} {rng.choice(GOALS)} in "
                         f"{rng.randint(1800, 2020)} .")
        else:
            sents.append(f"{n} was a {rng.choice(JOBS)} born in {rng.randint(1800, 2000)} , "
                         f"and wrote {rng.randint(2, 40)} books about {rng.choice(PLACES)} .")
    paragraphs = [" ".join(sents[i:i + 5]) for i in range(0, len(sents), 5)]
    return "\n\n".join(paragraphs)


def synth_corpus(out: Path, *, n_docs: int = 2000, seed: int = 0) -> Path:
    """Write a general English-like LM pretraining corpus: out/{train,valid}/<id>.txt (90/10 split)."""
    if n_docs < 1:
        raise ConfigError(f"n_docs must be >= 1, got {n_docs}")
    out = Path(out)
    rng = random.Random(f"corpus-{seed}")
    n_valid = max(1, n_docs // 10) if n_docs > 1 else 0
    for split, n in (("train", n_docs - n_valid), ("valid", n_valid)):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (out / split / f"{i}.txt").write_text(_corpus_doc(rng), encoding="utf-8")
    (out / "README").write_text(
        f"Generated English-like LM corpus (raylessons.data.synth.imdb.synth_corpus, seed={seed}): "
        f"{n_docs - n_valid} train and {n_valid} valid documents, one per .txt file.\n", encoding="utf-8")
    return out


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this generator's options (sizes, seed) to an argparse parser; dests match `synth`'s kwargs."""
    parser.add_argument("--n-train", dest="n_train", type=int, default=2000, help="labelled train reviews")
    parser.add_argument("--n-test", dest="n_test", type=int, default=2000, help="labelled test reviews")
    parser.add_argument("--n-unsup", dest="n_unsup", type=int, default=1000, help="unlabelled reviews")
    parser.add_argument("--n-sample", dest="n_sample", type=int, default=500,
                        help="rows of imdb_sample/texts.csv")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
