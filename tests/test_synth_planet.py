"""Planet look-alike: real on-disk format, label rules, long-tail frequencies, visible signatures."""
from __future__ import annotations

import argparse
import csv
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from raylessons.data.synth import planet
from raylessons.data.synth.planet import TAGS, WEATHER_TAGS, render, sample_tags, synth
from raylessons.errors import ConfigError

# approximate real shares from the facts sheet (counts / 40,479 images)
REAL_SHARE = {
    "primary": 0.927, "clear": 0.702, "agriculture": 0.304, "road": 0.199, "water": 0.183,
    "partly_cloudy": 0.179, "cultivation": 0.111, "habitation": 0.090, "haze": 0.067,
    "cloudy": 0.052, "bare_ground": 0.021,
}
RARE = ["artisinal_mine", "blooming", "blow_down", "conventional_mine", "selective_logging", "slash_burn"]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_tag_vocabulary_is_the_real_sorted_17():
    assert len(TAGS) == 17 and TAGS == sorted(TAGS)
    assert TAGS[:3] == ["agriculture", "artisinal_mine", "bare_ground"]
    assert set(WEATHER_TAGS) <= set(TAGS) and set(RARE) <= set(TAGS)


def test_files_follow_the_kaggle_layout(tmp_path):
    out = synth(tmp_path / "planet", n=30, size=64, seed=3, n_test=4)
    assert out == tmp_path / "planet"
    rows = _read_csv(out / "train_v2.csv")
    assert rows[0] == ["image_name", "tags"]
    assert [r[0] for r in rows[1:]] == [f"train_{i}" for i in range(30)]
    for name, tags in rows[1:]:
        tags = tags.split(" ")
        assert tags == sorted(tags) and set(tags) <= set(TAGS)
        assert sum(t in WEATHER_TAGS for t in tags) == 1
        assert tags == ["cloudy"] or "cloudy" not in tags
        img = Image.open(out / "train-jpg" / f"{name}.jpg")
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 64))
    assert sorted(p.name for p in (out / "test-jpg").iterdir()) == [f"test_{i}.jpg" for i in range(4)]
    assert not (synth(tmp_path / "no_test", n=2, size=32) / "test-jpg").exists()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = synth(tmp_path / "a", n=12, size=48, seed=7)
    b = synth(tmp_path / "b", n=20, size=48, seed=7)  # image i does not depend on n
    c = synth(tmp_path / "c", n=12, size=48, seed=8)
    assert _read_csv(a / "train_v2.csv") == _read_csv(b / "train_v2.csv")[:13]
    for i in range(12):
        assert (a / f"train-jpg/train_{i}.jpg").read_bytes() == (b / f"train-jpg/train_{i}.jpg").read_bytes()
    assert _read_csv(a / "train_v2.csv") != _read_csv(c / "train_v2.csv")


def test_tag_frequencies_follow_the_real_long_tail():
    rng = np.random.default_rng(0)
    n = 30_000
    draws = [sample_tags(rng) for _ in range(n)]
    share = {t: c / n for t, c in Counter(t for tags in draws for t in tags).items()}
    for tag, real in REAL_SHARE.items():
        assert share[tag] == pytest.approx(real, abs=0.015), tag
    for tag in RARE:
        assert 0.0015 <= share[tag] <= 0.012, tag
    # the long tail's order: common land tags outnumber bare ground, which outnumbers every rare tag
    assert share["agriculture"] > share["road"] > share["cultivation"] > share["bare_ground"]
    assert share["bare_ground"] > max(share[t] for t in RARE)
    assert all(sum(t in WEATHER_TAGS for t in tags) == 1 for tags in draws)


# each tag's paint colour; its share of pixels must rise visibly at 64 px when the tag is present
SIGNATURE = {
    "agriculture": (165, 190, 95), "road": (205, 190, 160), "water": (40, 85, 150),
    "cultivation": (150, 100, 60), "habitation": (225, 225, 220), "bare_ground": (210, 175, 135),
    "artisinal_mine": (225, 125, 45), "conventional_mine": (195, 120, 65),
    "blooming": (240, 220, 60), "blow_down": (175, 215, 130), "selective_logging": (170, 135, 95),
    "slash_burn": (120, 115, 110),
}


def _colour_share(tags, colour, seeds=range(8)):
    shares = []
    for seed in seeds:
        img = render(sorted(tags), np.random.default_rng(seed), 256).resize((64, 64), Image.BILINEAR)
        dist = np.linalg.norm(np.asarray(img, np.float32) - np.array(colour, np.float32), axis=2)
        shares.append((dist < 45).mean())
    return np.array(shares)


@pytest.mark.parametrize("tag", sorted(SIGNATURE))
def test_each_land_tag_leaves_a_signature_at_64px(tag):
    with_tag = _colour_share(["clear", "primary", tag], SIGNATURE[tag])
    without = _colour_share(["clear", "primary"], SIGNATURE[tag], seeds=range(100, 108))
    assert (with_tag > 0).mean() >= 0.75, with_tag  # visible in most tiles, not only on average
    assert with_tag.mean() > 3 * without.mean() + 0.002


def _stats(tags, seeds=range(10)):
    imgs = [np.asarray(render(tags, np.random.default_rng(s), 64), np.float32) for s in seeds]
    return np.array([im.mean() for im in imgs]), np.array([im.std() for im in imgs]), imgs


def test_weather_veils():
    clear_mean, clear_std, clear = _stats(["clear", "primary"])
    haze_mean, haze_std, _ = _stats(["haze", "primary"])
    cloudy_mean, _, _ = _stats(["cloudy"])
    _, _, partly = _stats(["partly_cloudy", "primary"])
    assert cloudy_mean.min() > 180 and clear_mean.max() < 100  # almost all white vs dark canopy
    assert haze_mean.min() > clear_mean.max()  # a whitish veil
    # lower contrast relative to brightness
    assert np.median(haze_std / haze_mean) < 0.6 * np.median(clear_std / clear_mean)
    white = lambda im: (im.min(axis=2) > 170).mean()  # noqa: E731
    assert all(0.05 < white(im) < 0.6 for im in partly)  # some clouds, not an overcast sky
    assert all(white(im) == 0 for im in clear)


def test_primary_is_dark_green_canopy():
    forest = np.array([np.asarray(render(["clear", "primary"], np.random.default_rng(s), 64), float)
                       .mean((0, 1)) for s in range(6)])
    open_land = np.array([np.asarray(render(["clear"], np.random.default_rng(s), 64), float)
                          .mean((0, 1)) for s in range(6)])
    assert (forest[:, 1] > forest[:, 0]).all() and (forest[:, 1] > forest[:, 2]).all()
    assert forest.mean(1).max() < open_land.mean(1).min()


def test_cli_arguments_map_to_synth_keywords(tmp_path):
    parser = argparse.ArgumentParser()
    planet.add_cli_arguments(parser)
    args = parser.parse_args(["--n", "3", "--size", "32", "--seed", "5", "--n-test", "2"])
    assert vars(args) == {"n": 3, "size": 32, "seed": 5, "n_test": 2}
    out = synth(tmp_path, **vars(args))
    assert len(_read_csv(out / "train_v2.csv")) == 4 and len(list((out / "test-jpg").iterdir())) == 2
    assert vars(parser.parse_args([])) == {"n": 2000, "size": 256, "seed": 0, "n_test": 0}


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n_test": -1}, {"size": 8}])
def test_bad_options_raise_config_error(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        synth(tmp_path, **kwargs)
