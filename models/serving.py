"""The served models, swapped atomically when a new version is activated.

A worker serves the bandwidth predictor of each link mode and, when their models are
active in the registry, the workload classifier (``"workload"``) and the demand
forecaster (``"forecast"``). :class:`ModelHolder` holds them all in one immutable mapping
of role -> model and replaces it whole, so a batch is served by one set of versions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, cast

from streams.capacity import Forecaster, WorkloadClassifier
from streams.errors import ModelError
from streams.predictor import BandwidthPredictor
from streams.records import MODES, ModelEvent, ModelRef

from .baseline import HarmonicMeanPredictor
from .forecast import OnnxForecaster
from .lstm_predictor import LstmBandwidthPredictor, model_name
from .registry import ModelRegistry
from .workload import OnnxWorkloadClassifier

log = logging.getLogger(__name__)

WORKLOAD_ROLE = "workload"
FORECAST_ROLE = "forecast"
WORKLOAD_MODEL = "workload-classifier"
"""Registry name of the workload classifier."""
FORECAST_MODEL = "forecast-ensemble"
"""Registry name of the demand forecaster."""


class Served(Protocol):
    """What every served model has: a name and a version."""

    name: str
    version: str


ModelSource = Callable[[], Mapping[str, Any]]
"""Returns the models to serve by role: a link mode, ``"workload"`` or ``"forecast"``."""


def baseline_models() -> Mapping[str, BandwidthPredictor]:
    """The harmonic-mean baseline for both modes."""
    return {mode: HarmonicMeanPredictor(mode) for mode in MODES}


class ModelHolder:
    """Holds an immutable mapping role -> model and replaces it whole on refresh.

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
        self._active: Mapping[str, Any] = MappingProxyType(dict(source()))

    def predictor_for(self, mode: str) -> BandwidthPredictor:
        try:
            return cast(BandwidthPredictor, self._active[mode])
        except KeyError:
            msg = f"No model is active for mode {mode!r}; active modes: {sorted(self._active)}"
            raise ModelError(msg) from None

    def workload(self) -> WorkloadClassifier | None:
        """The active workload classifier (``None``: none is active)."""
        return cast(WorkloadClassifier | None, self._active.get(WORKLOAD_ROLE))

    def forecaster(self) -> Forecaster | None:
        """The active demand forecaster (``None``: none is active)."""
        return cast(Forecaster | None, self._active.get(FORECAST_ROLE))

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


def model_loaded_events(
    before: Mapping[str, str], after: Mapping[str, str], now: float
) -> list[ModelEvent]:
    """``model.events.v1`` records for the modes whose model changed in a refresh.

    Examples:
        >>> model_loaded_events({"internet": "m:1"}, {"internet": "m:2"}, 1.8e9)[0].detail
        {'mode': 'internet', 'previous': 'm:1', 'worker_swap': True}
    """
    events: list[ModelEvent] = []
    for mode, ref in after.items():
        if before.get(mode) == ref:
            continue
        name, version = ref.rsplit(":", 1)
        previous = before.get(mode)
        events.append(
            ModelEvent(
                "loaded",
                ModelRef(name, version),
                now,
                previous_version=previous.rsplit(":", 1)[1] if previous else None,
                detail={"mode": mode, "previous": previous, "worker_swap": True},
            )
        )
    return events


def _versions(models: Mapping[str, Served]) -> dict[str, tuple[str, str]]:
    return {mode: (p.name, p.version) for mode, p in models.items()}


SHIPPED_BUNDLE = Path(__file__).with_name("artifacts")
"""Trained default models shipped with the package (see models/artifacts/README.md)."""


class RegistrySource:
    """The active LSTM of each mode from the registry (the baseline where none is
    active), and the active workload classifier and forecaster where there are.

    Loaded sessions are cached by version, so polling costs one small SQL query. A
    version whose artifact fails its checksum raises :class:`ModelError`: at start the
    worker refuses to run, on a later refresh it keeps serving the previous version.
    """

    def __init__(self, registry: ModelRegistry, modes: tuple[str, ...] = MODES) -> None:
        self.registry = registry
        self.modes = modes
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self) -> Mapping[str, Any]:
        active = self.registry.active_versions()
        out: dict[str, Any] = {}
        for mode in self.modes:
            name = model_name(mode)
            version = active.get(name)
            if version is None:
                out[mode] = HarmonicMeanPredictor(mode)
                continue
            key = (name, version)
            if key not in self._cache:
                path = self.registry.verify(self.registry.get(name, version))
                self._cache[key] = LstmBandwidthPredictor.load(path, name=name, version=version)
            out[mode] = self._cache[key]
        for role, name, load in (
            (WORKLOAD_ROLE, WORKLOAD_MODEL, OnnxWorkloadClassifier.load),
            (FORECAST_ROLE, FORECAST_MODEL, OnnxForecaster.load),
        ):
            version = active.get(name)
            if version is None:
                continue
            key = (name, version)
            if key not in self._cache:
                path = self.registry.verify(self.registry.get(name, version))
                self._cache[key] = load(path, name=name, version=version)
            out[role] = self._cache[key]
        return out


def with_shipped_models(registry: ModelRegistry) -> ModelRegistry:
    """The registry with the shipped models imported (once; a no-op when they are there).

    A shipped version is activated where no model of its name is active, or where the
    active one is an older shipped version; a model the user trained or chose stays.
    """
    if (SHIPPED_BUNDLE / "manifest.json").is_file():
        registry.import_bundle(SHIPPED_BUNDLE)
    return registry
