"""The label kinds: one class per kind carries its loss, activation, decoding and answer; inference looks it up."""
from __future__ import annotations

import pytest
import torch

from raylessons.data.kinds import LABEL_KINDS, label_kind
from raylessons.data.labels import CategoryLabel, LMLabel, MultiCategoryLabel
from raylessons.data.spatial import PointsLabel, SegmentationLabel
from raylessons.errors import ConfigError
from raylessons.inference import InferenceData, Predictor, inference_size
from raylessons.metrics import BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat


def test_the_registry_names_every_kind_by_its_own_name():
    assert sorted(LABEL_KINDS) == ["category", "float", "lm", "multi_category", "points", "segmentation"]
    assert all(cls.kind == name for name, cls in LABEL_KINDS.items())


def test_an_unknown_kind_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown label kind 'tags'; known: \['category'"):
        label_kind("tags")


@pytest.mark.parametrize("kind, loss, axis", [("multi_category", BCEWithLogitsFlat, None),
                                              ("category", CrossEntropyFlat, -1), ("segmentation", CrossEntropyFlat, 1),
                                              ("points", MSELossFlat, None), ("float", MSELossFlat, None),
                                              ("lm", CrossEntropyFlat, -1)])
def test_each_kind_has_its_loss(kind, loss, axis):
    got = label_kind(kind).loss_func()
    assert type(got) is loss
    if axis is not None:
        assert got.axis == axis


def test_activations_follow_the_kind():
    logits = torch.tensor([[0.0, 2.0]])
    assert torch.allclose(MultiCategoryLabel.activation(logits), torch.sigmoid(logits))
    assert torch.allclose(CategoryLabel.activation(logits), torch.tensor([[0.1192, 0.8808]]), atol=1e-4)
    assert torch.equal(PointsLabel.activation(logits), logits)
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 2] = 1.0
    assert torch.allclose(SegmentationLabel.activation(maps).sum(1), torch.ones(1, 2, 2))


def test_decoding_per_kind():
    classes = ["clear", "road", "water"]
    tags, mask, _ = MultiCategoryLabel.decode(torch.tensor([0.9, 0.1, 0.3]), classes, 0.2, None)
    assert tags == ["clear", "water"] and mask.tolist() == [True, False, True]
    assert CategoryLabel.decode(torch.tensor([0.2, 0.7, 0.1]), classes)[:2] == ("road", 1)
    probs = torch.zeros(3, 2, 2)
    probs[1] = 1.0  # every pixel is class 1
    mask, present, _ = SegmentationLabel.decode(probs, classes, None, (4, 4))
    assert mask.shape == (4, 4) and present == ["road"] and int(mask.sum()) == 16
    rc, unit, _ = PointsLabel.decode(torch.tensor([0.0, 0.0]), [], None, (100, 200))
    assert rc.tolist() == [[49.5, 99.5]] and unit.shape == (1, 2)


def test_only_spatial_kinds_squish_at_inference():
    assert inference_size(MultiCategoryLabel, 128) == 128
    assert inference_size(CategoryLabel, [96, 128]) == (96, 128)
    assert inference_size(SegmentationLabel, 128) == (128, 128)
    assert inference_size(PointsLabel, 120) == (120, 120)
    assert not LMLabel.spatial


def test_a_predictor_built_from_export_metadata_decodes_by_the_kind():
    meta = {"label_kind": "multi_category", "classes": ["a", "b"], "size": 32, "normalize": None, "threshold": 0.5,
            "model": {}}
    data = InferenceData(meta)
    assert data.label is MultiCategoryLabel and type(data.loss_func) is BCEWithLogitsFlat
    predictor = Predictor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2)), data, "cpu")
    assert predictor.size == 32 and predictor.threshold == 0.5 and predictor.kind == "multi_category"
    tags, _, probs = predictor.predict(torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8))
    assert set(tags) <= {"a", "b"} and probs.shape == (2,) and bool(((probs > 0) & (probs < 1)).all())
    assert tags == [c for c, p in zip("ab", probs.tolist()) if p > 0.5]


def test_answers_of_the_served_kinds():
    class Stub:  # what an answer asks of the predictor: its classes, threshold(s) and decode
        classes, threshold, thresholds, tag_thresholds = ["a", "b"], 0.5, None, None

        def decode(self, row, threshold=None, size=None):
            own = self.threshold if self.thresholds is None else self.thresholds
            return MultiCategoryLabel.decode(row, self.classes, own if threshold is None else threshold)

    row = torch.tensor([0.6, 0.4])
    assert MultiCategoryLabel.answer(Stub(), row, None) == {"tags": ["a"], "probs": {"a": pytest.approx(0.6),
                                                                                       "b": pytest.approx(0.4)},
                                                            "threshold": 0.5}
    assert MultiCategoryLabel.answer(Stub(), row, None, threshold=0.3)["tags"] == ["a", "b"]
    per_tag = Stub()
    per_tag.thresholds = torch.tensor([0.7, 0.3])  # a threshold per tag: both tags flip
    per_tag.tag_thresholds = {"a": 0.7, "b": 0.3}
    assert MultiCategoryLabel.answer(per_tag, row, None)["tags"] == ["b"]
    assert MultiCategoryLabel.answer(per_tag, row, None)["thresholds"] == pytest.approx({"a": 0.7, "b": 0.3})
    assert "thresholds" not in MultiCategoryLabel.answer(per_tag, row, None, threshold=0.5)
    assert {cls.kind for cls in LABEL_KINDS.values() if cls.served} == {"multi_category", "category",
                                                                         "segmentation", "points"}
    with pytest.raises(NotImplementedError, match="'lm' has no HTTP answer"):
        LMLabel.answer(Stub(), row, None)
