"""The held-out test set (`ItemLists.hold_out`, every task's `test_pct`): items that neither training nor model
selection sees, the same ones on every machine, labelled as in training when a model is evaluated on them."""
from __future__ import annotations

from pathlib import Path

import pytest

from raylessons.data.block import ImageList
from raylessons.data.labellists import held_out_share
from raylessons.data.synth import synth
from raylessons.errors import ConfigError, DataError
from raylessons.tasks import get_task


def _names(items, root) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in items}


def test_hold_out_takes_the_same_share_of_train_and_valid_by_name(planet_dir):
    src = ImageList.from_csv(planet_dir, "train_v2.csv", folder="train-jpg", suffix=".jpg").split_by_rand_pct(0.2,
                                                                                                             seed=1)
    everything = _names(src.train.items, planet_dir) | _names(src.valid.items, planet_dir)
    kept = src.hold_out(0.25)
    test = src.hold_out(0.25, use="test")
    train, valid, held = (_names(kept.train.items, planet_dir), _names(kept.valid.items, planet_dir),
                          _names(test.valid.items, planet_dir))
    assert held and not held & (train | valid)  # never trained on, never validated (selected) on
    assert held | train | valid == everything  # nothing else is lost
    assert held == {n for n in everything if held_out_share(n) < 0.25}  # chosen by name: any order, any machine
    assert 0.1 < len(held) / len(everything) < 0.4
    assert _names(test.train.items, planet_dir) == train  # evaluation labels encode as in training
    # another split of the rest (another seed) holds out the very same items
    other = ImageList.from_csv(planet_dir, "train_v2.csv", folder="train-jpg", suffix=".jpg").split_by_rand_pct(
        0.3, seed=7).hold_out(0.25, use="test")
    assert _names(other.valid.items, planet_dir) == held
    assert src.hold_out(0.0) is src
    with pytest.raises(ConfigError, match=r"test_pct must be in \[0, 1\), got 1.5"):
        src.hold_out(1.5)
    with pytest.raises(ConfigError, match="use must be one of"):
        src.hold_out(0.2, use="valid")
    with pytest.raises(DataError, match="holds out none"):
        src.hold_out(1e-9, use="test")


@pytest.mark.parametrize("task", ["planet", "camvid", "head_pose"])
def test_the_test_split_never_reaches_training_or_selection(task, tmp_path):
    """Each task's data with test_pct: the DataBunch training and selection use holds none of the test items
    (by name); `Task.test_data` validates on exactly those, with the training classes."""
    root = {"planet": lambda: synth("planet", tmp_path / "planet", n=40, size=32, seed=0),
            "camvid": lambda: synth("camvid", tmp_path / "camvid", n=12, size=(32, 48), seed=0),
            "head_pose": lambda: synth("biwi", tmp_path / "biwi", persons=13, frames=2, seed=0)}[task]()
    options = {"data": str(root), "size": 32, "bs": 4, "arch": "resnet18", "test_pct": 0.3}
    t = get_task(task)
    data = t.build_data(t.config(options))
    test = t.test_data(options)
    trained_on = {str(p) for p in data.train_ds.items}
    selected_on = {str(p) for p in data.valid_ds.items}
    tested_on = {str(p) for p in test.valid_ds.items}
    assert tested_on and not tested_on & (trained_on | selected_on)
    full = t.build_data(t.config({**options, "test_pct": 0.0}))
    assert trained_on | selected_on | tested_on == {str(p) for p in (*full.train_ds.items, *full.valid_ds.items)}
    assert test.train_ds.label.classes == data.train_ds.label.classes
    with pytest.raises(ConfigError, match="holds out no test set: set test_pct"):
        t.test_data({**options, "test_pct": 0.0})


def test_the_classifiers_test_reviews_stay_out_of_the_language_models_corpus(tmp_path):
    """ULMFiT fine-tunes the LM on every review's text: with the same test_pct, the reviews the classifier holds
    out are left out of the LM's corpus too (the same names under the same root hash the same way)."""
    from raylessons.data.synth.imdb import synth as synth_imdb
    from raylessons.data.text import TextList

    root = synth_imdb(tmp_path / "imdb", n_train=40, n_test=20, n_unsup=10, n_sample=0)
    lm = get_task("imdb_lm").build_source(get_task("imdb_lm").config({"data": str(root), "test_pct": 0.3}))
    lm_texts = _names(lm.train.items, root) | _names(lm.valid.items, root)
    clas_test = (TextList.from_folder(root).split_by_folder(train="train", valid="test")
                 .hold_out(0.3, use="test"))
    held = _names(clas_test.valid.items, root)
    assert held and not held & lm_texts
    assert any(n.startswith("unsup/") for n in lm_texts)  # the rest of the corpus is still there


def test_the_classifiers_test_split_never_reaches_its_training_or_selection(tmp_path):
    """The IMDB classifier (on an LM export's vocab): its training and validation reviews hold none of the test
    reviews (by name); `test_data` validates on exactly those (text datasets keep token ids, so the names are read
    from the labelled lists the bunches are built from)."""
    from raylessons.data.synth.imdb import synth as synth_imdb

    root = synth_imdb(tmp_path / "imdb", n_train=40, n_test=20, n_unsup=10, n_sample=0)
    lm = get_task("imdb_lm").learner({"data": str(root), "bs": 4, "test_pct": 0.3,
                                      "model": {"emb_sz": 8, "n_hid": 16, "n_layers": 3}})
    options = {"data": str(root), "bs": 4, "test_pct": 0.3, "lm_export": str(lm.export(tmp_path / "lm"))}
    t = get_task("imdb_clas")
    src, test_src = t.build_source(t.config(options)), t.build_source(t.config({**options, "split": "test"}))
    trained_on, selected_on = _names(src.train.items, root), _names(src.valid.items, root)
    tested_on = _names(test_src.valid.items, root)
    assert len(t.test_data(options).valid_ds) == len(tested_on)
    assert tested_on and not tested_on & (trained_on | selected_on)
    assert tested_on | trained_on | selected_on == {f"{split}/{label}/{p.name}" for split in ("train", "test")
                                                    for label in ("neg", "pos") for p in (root / split / label).iterdir()}


def test_bad_held_out_options_name_the_option(planet_dir):
    t = get_task("planet")
    with pytest.raises(ConfigError, match=r"test_pct must be a share in \[0, 1\), e.g. 0.2; got 20"):
        t.config({"data": str(planet_dir), "test_pct": 20})
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'; got 'valid'"):
        t.config({"data": str(planet_dir), "split": "valid"})


def test_each_epoch_reports_how_many_layer_groups_trained_whole(planet_dir):
    """The worker's epoch report (what Tune and Train see) says how many layer groups trained whole: the head
    alone while frozen, all three of resnet18's after unfreeze()."""
    from raylessons.distributed.worker import run_worker, worker_config
    from raylessons.plan import parse_plan

    stages = parse_plan([{"freeze": True, "epochs": 1, "max_lr": 1e-3},
                         {"unfreeze": True, "epochs": 1, "max_lr": "slice(1e-5, 1e-4)"}])
    reports = []
    worker = worker_config("planet", {"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"}, stages)
    run_worker(worker, lambda metrics, ckpt, stage, epoch: reports.append((stage, metrics["unfrozen_groups"])))
    assert reports == [(0, 1), (1, 3)]


def test_evaluate_scores_an_export_on_the_test_items_only(planet_dir, tmp_path):
    """`Task.evaluate`: an export's loss and metrics over the held-out items, the same numbers as validating the
    trained learner on `test_data` itself (and not those of the validation set). The test split's tags are the
    training split's: a tag only the test items carry is a clear error, not a model of another shape."""
    import torch

    t = get_task("planet")
    with pytest.raises(DataError, match=r"held-out test items carry labels that no training item has.*"
                                        r"labels \['blooming', 'selective_logging', 'slash_burn'\]"):
        t.test_data({"data": str(planet_dir), "test_pct": 0.3})
    root = synth("planet", tmp_path / "planet", n=300, size=32, seed=0)
    options = {"data": str(root), "size": 32, "bs": 16, "arch": "resnet18", "test_pct": 0.2}
    assert t.test_data(options).train_ds.label.classes == t.build_data(t.config(options)).train_ds.label.classes
    torch.manual_seed(0)
    learn = t.learner(options)
    learn.recorder.verbose = False
    learn.fit_one_cycle(1, 1e-2)
    export = learn.export(tmp_path / "export")
    scores = t.evaluate(options, export)
    loss, metrics = learn.validate(t.test_data(options).valid_dl)
    assert scores == pytest.approx({"test_loss": loss, **dict(zip(learn.metric_names, metrics))}, abs=1e-6)
    assert scores["test_loss"] != pytest.approx(learn.validate()[0], abs=1e-6)  # another set of items
    assert t.test_key() == "fbeta" and get_task("head_pose").test_key() == "test_loss"
