"""The data-block chain and the lesson's data names (`from raylessons.data import ImageList, get_transforms`).

Names load on first use, so that `raylessons.data.synth` and the download code start without torch.
"""
from .._surface import lazy_names

_EXPORTS = {
    **dict.fromkeys(["ItemList", "ImageList", "IMAGE_EXTENSIONS"], ".block"),
    **dict.fromkeys(["ItemLists", "LabelLists"], ".labellists"),
    **dict.fromkeys(["SegmentationItemList", "PointsItemList"], ".vision"),
    **dict.fromkeys(["TextList", "TextDataBunch", "TextLMDataBunch", "TextClasDataBunch", "load_data"], ".text"),
    **dict.fromkeys(["DataBunch"], ".bunch"),
    **dict.fromkeys(["Label", "MultiCategoryLabel", "CategoryLabel", "FloatLabel", "LMLabel"], ".labels"),
    **dict.fromkeys(["SegmentationLabel", "PointsLabel", "read_codes"], ".spatial"),
    **dict.fromkeys(["LABEL_KINDS", "label_kind"], ".kinds"),
    **dict.fromkeys(["get_transforms", "imagenet_stats", "RandomDihedral"], ".transforms"),
    **dict.fromkeys(["open_image", "open_mask"], ".imageio"),
    **dict.fromkeys(["read_csv"], ".tables"),
    **dict.fromkeys(["get_ctr"], ".biwi"),
    **dict.fromkeys(["Vocab"], ".vocab"),
    **dict.fromkeys(["Tokenizer"], ".tokenize"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
