"""Training-loop callbacks: the hooks that one-cycle, the LR finder, TensorBoard and Ray reporting hang on."""
from .core import Callback, CancelFitException, EVENTS
from .one_cycle import OneCycleScheduler
from .lr_finder import LRFinder
from .tensorboard import TensorBoardCallback

__all__ = ["Callback", "CancelFitException", "EVENTS", "OneCycleScheduler", "LRFinder", "TensorBoardCallback"]
