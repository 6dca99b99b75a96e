"""`raylessons demo`: every workflow on generated data, trained by Ray Train (and in this process), swept by Ray
Tune, served by Ray Serve, with a closing summary and `report.html`."""
from .presets import DEFAULT, FULL, PRESETS, SENTIMENT_EXAMPLES, SMOKE, TARGETS
from .run import print_summary, run_demo, summary_rows

__all__ = ["run_demo", "summary_rows", "print_summary", "PRESETS", "TARGETS", "SENTIMENT_EXAMPLES", "FULL",
           "DEFAULT", "SMOKE"]
