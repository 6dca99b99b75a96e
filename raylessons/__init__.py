"""raylessons: fast.ai lesson 3 rebuilt on Ray Train, Tune and Serve.

`from raylessons import ImageList, get_transforms, cnn_learner, models` gives the lesson's names (they load
on first use, so that `import raylessons` costs nothing and the Ray layers stay opt-in). A notebook can
take them all at once: `from raylessons.vision import *` or `from raylessons.text import *`.
"""
from ._surface import lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(["ItemList", "ImageList", "ItemLists", "LabelLists", "SegmentationItemList", "PointsItemList",
                     "TextList", "TextDataBunch", "TextLMDataBunch", "TextClasDataBunch", "load_data", "DataBunch",
                     "get_transforms", "imagenet_stats", "open_image", "open_mask", "read_codes", "get_ctr"], ".data"),
    **dict.fromkeys(["cnn_learner", "unet_learner"], ".vision_learner"),
    **dict.fromkeys(["AWD_LSTM", "language_model_learner", "text_classifier_learner"], ".text_learner"),
    **dict.fromkeys(["Learner", "load_learner"], ".learner"),
    **dict.fromkeys(["Interpretation", "ClassificationInterpretation", "MultiLabelInterpretation",
                     "SegmentationInterpretation", "PointsInterpretation"], ".interpret"),
    **dict.fromkeys(["accuracy", "accuracy_thresh", "fbeta", "accuracy_ignoring", "BCEWithLogitsFlat",
                     "CrossEntropyFlat", "MSELossFlat"], ".metrics"),
    **dict.fromkeys(["ConfigError", "DataError"], ".errors"),
    **dict.fromkeys(["download"], ".data.download"),
    **dict.fromkeys(["synth"], ".data.synth"),
    "models": ".models",
}

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
