"""`WholePointsOptuna`: Tune's OptunaSearch whose first trials are the given points, whole (imported only when a
sweep searches with Optuna, an optional extra: pip install 'raylessons[optuna]').

Optuna takes only the keys it searches from `points_to_evaluate`, and Tune fills in the space's constants. So a
point that sets a value the space holds constant, such as the lesson's head-only schedule when head pose's preset
draws only `all`, would run with the constant. Here each point's other keys come back with its suggestion (Tune
merges a suggestion over the constants), and the point runs as written.
"""
from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain

__all__ = ["WholePointsOptuna"]


class WholePointsOptuna(OptunaSearch):
    def __init__(self, points: list[dict] | None = None, **kwargs):
        super().__init__(points_to_evaluate=[dict(p) for p in points or []], **kwargs)
        self._whole, self._given = [dict(p) for p in points or []], {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        searched = {k for k, v in config.items() if isinstance(v, Domain)}  # all that Optuna may enqueue
        self._points_to_evaluate = [{k: v for k, v in p.items() if k in searched} for p in self._whole]
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            if trial_id not in self._given and len(self._given) < len(self._whole):
                self._given[trial_id] = self._whole[len(self._given)]  # Optuna asks enqueued trials first
            config = {**self._given.get(trial_id, {}), **config}
        return config
