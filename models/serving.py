"""The active predictor per mode, swapped atomically when a new version is activated."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType

from novacron.errors import ModelError

from .baseline import HarmonicMeanPredictor
from .predictor import BandwidthPredictor

log = logging.getLogger(__name__)

ModelSource = Callable[[], Mapping[str, BandwidthPredictor]]


def baseline_models() -> Mapping[str, BandwidthPredictor]:
    """The harmonic-mean baseline for both modes."""
    return {mode: HarmonicMeanPredictor(mode) for mode in ("datacenter", "internet")}


class ModelHolder:
    """Holds an immutable mapping mode -> predictor and replaces it whole on refresh.

    The processor looks the predictor up once per batch, so a batch is served by one
    version and the next batch by the new one: no event is predicted twice or skipped.

    Examples:
        >>> holder = ModelHolder(baseline_models)
        >>> holder.predictor_for("internet").name
        'harmonic-mean'
        >>> holder.describe()["internet"]
        'harmonic-mean:1'
    """

    def __init__(self, source: ModelSource) -> None:
        self._source = source
        self._active: Mapping[str, BandwidthPredictor] = MappingProxyType(dict(source()))

    def predictor_for(self, mode: str) -> BandwidthPredictor:
        try:
            return self._active[mode]
        except KeyError:
            msg = f"No model is active for mode {mode!r}; active modes: {sorted(self._active)}"
            raise ModelError(msg) from None

    def refresh(self) -> bool:
        """Reload from the source; swap if any version changed. Returns whether it did."""
        try:
            fresh = dict(self._source())
        except ModelError:
            log.exception("Keeping the active models: the newly activated ones failed to load")
            return False
        if _versions(fresh) == _versions(self._active):
            return False
        log.info("Activating models %s (was %s)", _versions(fresh), _versions(self._active))
        self._active = MappingProxyType(fresh)
        return True

    def describe(self) -> dict[str, str]:
        return {mode: f"{p.name}:{p.version}" for mode, p in sorted(self._active.items())}


def _versions(models: Mapping[str, BandwidthPredictor]) -> dict[str, tuple[str, str]]:
    return {mode: (p.name, p.version) for mode, p in models.items()}
