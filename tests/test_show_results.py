"""learn.show_results: each label kind draws an item's target beside the model's prediction, as a PNG."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from raylessons.data.block import ImageList  # noqa: F401  (the data chain loads from block)
from raylessons.data.labels import CategoryLabel, MultiCategoryLabel
from raylessons.data.text_bunch import TextClasDataBunch, TextLMDataBunch
from raylessons.data.vision import PointsLabel, SegmentationLabel
from raylessons.recorder import _pyplot


@pytest.fixture
def axes():
    plt = _pyplot()
    fig, axs = plt.subplots(1, 3)
    yield list(axs)
    plt.close(fig)


def _image(h=8, w=10):
    return torch.rand(3, h, w)


def test_multi_label_title_lists_tags_above_the_threshold(axes):
    label = MultiCategoryLabel([["a"]], ["a", "b", "c"])
    label.show_result(axes, _image(), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.9, 0.1, 0.3]), threshold=0.2)
    assert axes[0].get_title() == "pred a c\ntrue a"
    label.show_result(axes, _image(), torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.9, 0.1, 0.3]), threshold=0.5)
    assert axes[0].get_title() == "pred a\ntrue a c"


def test_category_title_names_the_class_and_its_probability(axes):
    label = CategoryLabel(["x"], ["cat", "dog"])
    label.show_result(axes, _image(), torch.tensor(1), torch.tensor([0.25, 0.75]), threshold=0.5)
    assert axes[0].get_title() == "pred dog (0.75)\ntrue dog"


def test_segmentation_draws_image_truth_and_prediction_with_accuracy_ignoring_void(axes):
    label = SegmentationLabel.__new__(SegmentationLabel)
    label.classes, label.void_code = ["road", "sky", "Void"], 2
    y = torch.tensor([[0, 0, 1, 2]])  # the Void pixel does not count
    probs = torch.zeros(3, 1, 4)
    probs[0, 0, :] = 1.0  # predicts road everywhere: 2 of the 3 non-Void pixels right
    label.show_result(axes, _image(1, 4), y, probs, threshold=0.5)
    assert [ax.get_title() for ax in axes] == ["image", "true mask", "predicted (accuracy 0.67)"]
    assert len(axes[1].get_images()) == 2 and len(axes[0].get_images()) == 1  # overlays on the image


def test_points_show_the_distance_in_pixels_of_the_shown_image(axes):
    label = PointsLabel([[[4.0, 5.0]]])
    y = torch.tensor([[0.0, 0.0]])
    pred = torch.tensor([0.5, 0.0])  # half the height down: 2 px on an 8-px-high image
    label.show_result(axes, _image(8, 10), y, pred, threshold=0.5)
    assert axes[0].get_title() == "off by 2.0 px"
    assert axes[0].get_ylim() == (7.5, -0.5)  # the picture's frame, whatever the guess


def test_text_classifier_results_name_prediction_and_probability():
    from raylessons.data.text_loaders import TextDataset
    from raylessons.data.vocab import Vocab

    vocab = Vocab(["xxunk", "xxpad", "good", "bad", "film"])
    label = CategoryLabel(["pos", "neg"], ["neg", "pos"])
    ds = TextDataset([torch.tensor([2, 4]).numpy(), torch.tensor([3, 4]).numpy()], label, vocab)
    data = TextClasDataBunch(ds, ds, bs=2)
    xb = torch.tensor([[2, 4], [1, 3]])
    rows = data._result_rows(xb, torch.tensor([1, 0]), torch.tensor([[0.2, 0.8], [0.3, 0.7]]), max_len=10)
    assert rows == [{"text": "good film", "target": "pos", "prediction": "pos", "probability": "0.800"},
                    {"text": "bad", "target": "neg", "prediction": "pos", "probability": "0.700"}]


def test_language_model_results_show_the_next_words_and_the_guess():
    from raylessons.data.vocab import Vocab

    vocab = Vocab(["xxunk", "xxpad", "a", "b", "c", "d"])
    data = TextLMDataBunch.__new__(TextLMDataBunch)
    data.train_ds = type("DS", (), {"vocab": vocab})()
    xb = torch.tensor([[2, 3, 4, 5]])
    yb = torch.tensor([[3, 4, 5, 2]])
    preds = torch.zeros(1, 4, 6)
    preds[0, :, 4] = 1.0  # always guesses "c"
    rows = data._result_rows(xb, yb, preds, max_len=10, n_next=2)
    assert rows == [{"text": "... a b", "target": "d a", "pred": "c c"}]


def test_learner_show_results_writes_one_row_per_item_for_segmentation(tmp_path):
    from raylessons.data.synth import synth
    from raylessons.tasks import camvid, planet

    d = synth("camvid", tmp_path / "camvid", n=8, size=(24, 32), seed=0)
    cfg = camvid.Config(data=str(d), size=[24, 32], bs=2, arch="resnet18")
    learn = camvid.build_learner(camvid.build_data(cfg), cfg)
    two = Image.open(learn.show_results(rows=2, path=tmp_path / "two.png")).size
    one = Image.open(learn.show_results(rows=1, path=tmp_path / "one.png")).size
    assert two[0] == pytest.approx(one[0], rel=0.05) and two[1] > 1.7 * one[1]  # 3 panels wide, a row per item

    d = synth("planet", tmp_path / "planet", n=24, size=32, seed=0)
    cfg = planet.Config(data=str(d), size=32, bs=8, arch="resnet18")
    learn = planet.build_learner(planet.build_data(cfg), cfg)
    grid = Image.open(learn.show_results(rows=2, path=tmp_path / "planet.png")).size
    assert grid[0] > 1.7 * Image.open(learn.show_results(rows=1, path=tmp_path / "p1.png")).size[0]
    with pytest.raises(ValueError, match="ds_type"):
        learn.show_results(ds_type="test")
