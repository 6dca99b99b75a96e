"""Look inside a trained model (fastai's `ClassificationInterpretation`): `Interpretation.from_learner(learn)`
gives the interpretation of the learner's label kind, built on one `get_preds` pass over the valid set."""
from .classes import ClassificationInterpretation, MultiLabelInterpretation
from .core import Interpretation
from .spatial import PointsInterpretation, SegmentationInterpretation

__all__ = ["Interpretation", "ClassificationInterpretation", "MultiLabelInterpretation",
           "SegmentationInterpretation", "PointsInterpretation"]
