"""The callback protocol of the Learner's fit loop."""
from __future__ import annotations

__all__ = ["Callback", "CancelFitException", "EVENTS"]

# the events fired by Learner.fit, in order
EVENTS = ("before_fit", "before_epoch", "before_batch", "after_loss", "after_batch",
          "after_train", "after_epoch", "after_fit")


class CancelFitException(Exception):
    """Raised by a callback to end `fit` early (after_fit still runs)."""


class Callback:
    """Base class: override any of EVENTS; each hook receives the learner explicitly."""

    order: int = 0

    def __call__(self, event: str, learn) -> None:
        hook = getattr(self, event, None)
        if hook is not None:
            hook(learn)
