"""Everything the lesson's ULMFiT notebook uses: `from raylessons.text import *` (fastai's text.all)."""
from .data.text import (
           TextClasDataBunch,
           TextDataBunch,
           TextList,
           TextLMDataBunch,
           load_data,
)
from .data.vocab import Vocab
from .errors import ConfigError, DataError
from .interpret import ClassificationInterpretation, Interpretation
from .learner import Learner, load_learner
from .metrics import accuracy
from .text_learner import AWD_LSTM, language_model_learner, text_classifier_learner

__all__ = ["TextClasDataBunch", "TextDataBunch", "TextList", "TextLMDataBunch", "load_data", "Vocab", "ConfigError",
           "DataError", "Learner", "load_learner", "accuracy", "AWD_LSTM", "language_model_learner",
           "text_classifier_learner", "Interpretation", "ClassificationInterpretation"]
