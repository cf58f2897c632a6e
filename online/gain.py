"""Per-link online adaptation of a bandwidth model's correction to the last value.

The served models predict a correction on the last value: ``point = last * r`` with
``r = point / last``. How much of that correction is worth taking differs from link to
link: on a link that behaves like a random walk the best forecast is close to the last
value (``r ** 0``), on a mean-reverting one the model's correction may be too timid
(``r ** 1.5``). :class:`OnlineGain` learns the exponent ``g`` for each link from the
link's own (prediction, actual) pairs with the exponentially weighted average forecaster
(Hedge) over a fixed grid of gains.

The pairs are those the link's rolling window holds: each window entry stores the
model's unadapted prediction made at that sample, so the gain is recomputed from the
window at every batch. A worker keeps no learner state of its own (any worker of the
consumer group can take a partition, and a restart loses nothing), and a replay gives
the same predictions however the samples were batched. River's ``EWARegressor`` is the
same forecaster as a per-key Python object; keeping one per link outside the window
store would be state a restart loses, so the weights are computed here in numpy, for a
whole batch of links at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.features import EPS_MBPS


@dataclass(frozen=True, slots=True)
class OnlineGain:
    """Hedge over gains applied to the model's log correction ``log(point / last)``.

    Attributes:
        gains: the experts: ``last * (point / last) ** g`` for each ``g``. ``0`` is the
            last value, ``1`` the model as trained.
        eta: learning rate of the weights ``exp(-eta * cumulative loss)``.
        loss_cap: the loss of one pair is ``|expert - actual| / last``, capped here so
            that one outage sample cannot decide a link's gain.

    With no pairs yet the weights are uniform, so a new link gets the mean gain (0.75
    with the defaults): three quarters of the model's correction until the link has
    shown what it is worth. The defaults were chosen on the training and validation
    trace files, never on the test files, with an earlier internet model, for which the
    gain helped; with the shipped one the model alone scores better, so the worker runs
    without the gain unless ``NOVACRON_ONLINE_GAIN=true`` (``bench/online_gain_selection.py``).

    Examples:
        >>> hedge = OnlineGain()
        >>> flat = np.full((1, 8), 100.0)
        >>> hedge.gains_for(flat, np.full((1, 8), np.nan)).round(2)  # no pairs yet
        array([0.75])
        >>> hedge.gains_for(flat, np.full((1, 8), 110.0)).round(2)  # corrections were wrong
        array([0.11])
    """

    gains: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    eta: float = 5.0
    loss_cap: float = 2.0

    def gains_for(self, series: np.ndarray, predicted: np.ndarray, horizon: int = 1) -> np.ndarray:
        """The gain of each row from the pairs its window holds.

        Args:
            series: ``(batch, steps)`` bandwidth per window entry, oldest first, NaN
                where absent (left padding included).
            predicted: ``(batch, steps)`` the model's unadapted prediction made at each
                entry for the entry ``horizon`` steps later, NaN where none was made.
            horizon: steps between a prediction and the sample it is about.

        Returns:
            ``(batch,)`` gains, each a weighted mean of ``self.gains``.
        """
        grid = np.asarray(self.gains, dtype=np.float64)
        if series.shape[1] <= horizon:
            return np.full(series.shape[0], grid.mean())
        last = series[:, :-horizon]
        made = predicted[:, :-horizon]
        actual = series[:, horizon:]
        ok = np.isfinite(last) & np.isfinite(made) & np.isfinite(actual)
        base = np.maximum(np.where(ok, last, 1.0), EPS_MBPS)
        made = np.maximum(np.where(ok, made, 1.0), EPS_MBPS)
        log_ratio = np.where(ok, np.log(made / base), 0.0)
        target = np.where(ok, np.maximum(actual, 0.0), 0.0) / base
        # (batch, pairs, gains): relative error of every expert on every pair.
        experts = np.exp(log_ratio[..., None] * grid)
        loss = np.minimum(np.abs(experts - target[..., None]), self.loss_cap)
        total = np.where(ok[..., None], loss, 0.0).sum(axis=1)
        logits = -self.eta * (total - total.min(axis=1, keepdims=True))
        weights = np.exp(logits)
        # Elementwise and along-axis sums, not a matrix product: BLAS picks kernels by
        # batch size, and a link's prediction must not depend on what it was batched with.
        result: np.ndarray = (weights * grid).sum(axis=1) / weights.sum(axis=1)
        return result

    def adapt(self, point: np.ndarray, last: np.ndarray, gain: np.ndarray) -> np.ndarray:
        """The factor that turns the model's point into the adapted one: ``r ** (g - 1)``.

        Multiply the point and both interval bounds by it; rows without a positive last
        value or point keep the model's output (factor 1).

        Examples:
            >>> OnlineGain().adapt(np.array([120.0, 50.0]), np.array([100.0, 0.0]),
            ...                    np.array([0.5, 0.5])).round(4)
            array([0.9129, 1.    ])
        """
        ok = np.isfinite(point) & np.isfinite(last) & (point > 0) & (last > 0)
        ratio = np.where(ok, point, 1.0) / np.where(ok, last, 1.0)
        return np.where(ok, ratio ** (gain - 1.0), 1.0)
