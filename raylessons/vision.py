"""Everything a vision notebook of the lesson uses: `from raylessons.vision import *` (fastai's vision.all)."""
from . import models
from .data.biwi import get_ctr
from .data.block import ImageList, ItemList
from .data.bunch import DataBunch
from .data.imageio import open_image, open_mask
from .data.transforms import get_transforms, imagenet_stats
from .data.vision import PointsItemList, SegmentationItemList, read_codes
from .errors import ConfigError, DataError
from .interpret import (ClassificationInterpretation, Interpretation, MultiLabelInterpretation, PointsInterpretation,
                        SegmentationInterpretation)
from .learner import Learner, load_learner
from .metrics import MSELossFlat, accuracy, accuracy_ignoring, accuracy_thresh, fbeta
from .vision_learner import cnn_learner, unet_learner

__all__ = ["get_ctr", "ImageList", "ItemList", "DataBunch", "open_image", "open_mask", "get_transforms",
           "imagenet_stats", "PointsItemList", "SegmentationItemList", "read_codes", "ConfigError", "DataError",
           "Learner", "load_learner", "MSELossFlat", "accuracy", "accuracy_ignoring", "accuracy_thresh", "fbeta",
           "cnn_learner", "unet_learner", "models", "Interpretation", "ClassificationInterpretation",
           "MultiLabelInterpretation", "SegmentationInterpretation", "PointsInterpretation"]
