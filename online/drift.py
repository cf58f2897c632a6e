"""Two-tier drift detection on one stream of values: a warning, then a confirmed drift.

A :class:`DriftMonitor` is fed one float per link sample. Its first ``warmup`` values
after a reset are the reference: their median and median absolute deviation (MAD)
standardise every later value, ``z = (x - median) / (1.4826 * MAD)``, clipped to
``[-clip, clip]``. The median and the MAD rather than the mean and the standard
deviation because both signals are heavy-tailed: one outage in the warm-up would
otherwise set a link's scale for good. Standardising makes one calibration hold on
quiet and on noisy links (the internet LSTM's mean residual per trace file ranges from
0.04 to 0.27 between the 10th and 90th percentile of files); the clip bounds what one
spike adds to a cumulative sum.

The standardised values go to River's detectors, called as River writes them
(``update()`` then ``.drift_detected``):

- warning (tier 1): a :class:`river.drift.PageHinkley` with the lower
  ``warning_threshold``.
- drift (tier 2, confirmed): a Page-Hinkley with ``ph_threshold`` and/or a
  :class:`river.drift.ADWIN` (``confirm``), ADWIN's cuts counted only in the direction
  ``mode`` watches.

A warning is latched: it is reported once, and again only after the warning detectors
stayed quiet for ``warning_hold`` samples. A drift reported before any warning of its
change is reported as ``"drift"`` (the warning coincides). After a drift the monitor
ignores values until :meth:`DriftMonitor.reset`.

Two monitors run per link: :data:`RESIDUAL_SETTINGS` on ``min(|log(actual /
predicted)|, 2)`` of the active model, whose confirmed drifts trigger adaptation, and
:data:`INPUT_SETTINGS` on ``log(bandwidth)``, whose warnings only are used (a link's
level moves with daily cycles and bursts, so it warns more often). Both were chosen by
``bench/drift_calibration.py`` (full run of 2026-11-27, ``bench/results/
drift_calibration.md``) on the streams of :mod:`online.drift_streams`:

- residual: no confirmed drift in 800,000 stationary samples (8 links, log-error
  spread 0.03 to 0.2) nor in the 248,571 samples right after a start; 9.5 warnings per
  100,000. A rise of the log error's mean by 0.1, 0.2, 0.3 is confirmed after 42, 24,
  25 samples (median; p90 44, 26, 26), warned strictly before in 11 of 12 runs; a
  spread x3 after 74 (p90 106). A spread x2 is warned about (median 72 samples) but
  confirmed within 2,000 samples in 6 of 12 runs only, x1.5 in 4 of 12: smaller
  changes of spread alone are beyond this monitor. River's PageHinkley defaults in the
  same monitor raise 108 false drifts per 100,000 samples; ``PageHinkley()`` on the
  raw residual takes 900 samples to confirm the 0.1 rise.
- input: 0.25 false drifts and 9 warnings per 100,000 stationary samples (2 and 13.5
  with a daily cycle); a halving of the level is warned after 20 samples (p90 41) and
  confirmed after 90 (p90 120); a 20 % drop is missed: the level wanders that much.
- throughput traces (the shipped internet LSTM on the FCC and HSDPA folders, 139
  files of about 250 samples, 35,362 in all): residual 8 warnings, no drift; input 18
  warnings, 2 drifts.

An update costs about 3 µs, a snapshot is about 1.2 KB and a dumps + loads about
60 µs (two-core development machine).
"""

from __future__ import annotations

import math
import pickle
import statistics
from array import array
from dataclasses import dataclass

from river import drift

from streams.errors import ConfigError, ModelError

__all__ = ["INPUT_SETTINGS", "RESIDUAL_SETTINGS", "DriftMonitor", "DriftSettings"]

FORMAT = "novacron-drift-monitor/1"
MODES = ("up", "down", "both")
CONFIRMS = ("ph", "adwin", "either", "both")
MAD_TO_SD = 1.4826
# Half-life of the recent mean reported as "mean_after" in the evidence, in samples.
RECENT_HALF_LIFE = 20


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """What a :class:`DriftMonitor` watches for and how sure it must be.

    Thresholds and ``ph_delta`` are in units of the reference's robust standard
    deviation (``1.4826 * MAD`` of the warm-up, at least ``min_scale`` in the signal's
    units); with ``warmup=0`` the values are not standardised and the same numbers are
    in the signal's units. The defaults are :data:`RESIDUAL_SETTINGS`, chosen with
    :data:`INPUT_SETTINGS` by the full run of ``bench/drift_calibration.py`` of
    2026-11-27 (``bench/results/drift_calibration.json``): the candidate with at most 1
    confirmed drift and 20 warnings per 100,000 samples of no change, that never missed
    an abrupt change, with the least median delay on abrupt changes.

    Attributes:
        warmup: values after a reset that set the reference (no detection meanwhile).
        min_scale: floor of the reference's scale, in the signal's units.
        clip: bound on ``|z|``.
        mode: ``"up"``, ``"down"`` or ``"both"``: which changes of the mean count.
        ph_delta: Page-Hinkley's tolerated drift per sample (``delta``).
        ph_min_instances: values each Page-Hinkley sees before it may fire.
        ph_alpha: Page-Hinkley's forgetting factor. 1 (none): with River's 1 - 1e-4 the
            statistic stops drifting down after about 10,000 values and wanders, which
            took the residual monitor from 0 to 8.9 false drifts per 100,000 samples.
        ph_threshold: the confirming Page-Hinkley's ``threshold`` (tier 2).
        warning_threshold: the warning Page-Hinkley's ``threshold`` (tier 1).
        adwin_delta: ADWIN's ``delta`` when ``confirm`` uses it.
        adwin_clock: ADWIN's ``clock`` (values between two checks).
        confirm: what confirms a drift: ``"ph"``, ``"adwin"``, ``"either"``, or
            ``"both"`` (each fired within ``warning_hold`` values).
        warning_hold: quiet values after which a latched warning may fire again.
    """

    warmup: int = 100
    min_scale: float = 0.01
    clip: float = 3.0
    mode: str = "up"
    ph_delta: float = 0.75
    ph_min_instances: int = 30
    ph_alpha: float = 1.0
    ph_threshold: float = 50.0
    warning_threshold: float = 20.0
    adwin_delta: float = 1e-5
    adwin_clock: int = 32
    confirm: str = "ph"
    warning_hold: int = 1_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f"The 'mode' of DriftSettings must be one of {MODES}. Got {self.mode!r} instead."
            raise ConfigError(msg)
        if self.confirm not in CONFIRMS:
            msg = (
                f"The 'confirm' of DriftSettings must be one of {CONFIRMS}. "
                f"Got {self.confirm!r} instead."
            )
            raise ConfigError(msg)
        if not 0 < self.warning_threshold <= self.ph_threshold:
            msg = (
                "DriftSettings needs 0 < warning_threshold <= ph_threshold (the warning is "
                f"the more sensitive tier). Got {self.warning_threshold} and {self.ph_threshold}."
            )
            raise ConfigError(msg)
        positive = {
            "min_scale": self.min_scale,
            "clip": self.clip,
            "adwin_delta": self.adwin_delta,
            "warning_hold": self.warning_hold,
        }
        for name, value in positive.items():
            if not value > 0:
                msg = f"The '{name}' of DriftSettings must be > 0. Got {value!r} instead."
                raise ConfigError(msg)
        if self.warmup < 0 or self.ph_delta < 0:
            msg = (
                "DriftSettings needs warmup >= 0 and ph_delta >= 0. "
                f"Got {self.warmup} and {self.ph_delta}."
            )
            raise ConfigError(msg)


RESIDUAL_SETTINGS = DriftSettings()
"""The residual monitor: ``min(|log(actual / predicted)|, 2)`` of the active model.

Strict, since a confirmed drift costs a retrain request: 0 false drifts in 1,048,571
samples of the calibration. Only rises of the error count (``mode="up"``)."""

INPUT_SETTINGS = DriftSettings(
    min_scale=0.2, clip=5.0, mode="both", ph_delta=2.0, ph_threshold=100.0, warning_threshold=25.0
)
"""The input monitor: ``log(bandwidth)`` of the link, changes either way.

The caller uses its warnings only. The scale floor of 0.2 (in log) keeps a quiet
warm-up from making the ordinary wander of a link's level look like a change."""


_SHARED = {"residual": RESIDUAL_SETTINGS, "input": INPUT_SETTINGS}
_SHARED_NAMES = {settings: name for name, settings in _SHARED.items()}


class DriftMonitor:
    """Warnings and confirmed drifts of one stream of values (one per link and signal).

    ``seen`` counts the finite values given since the last reset (evidence reports it at
    the event: the value that fired is counted).

    Examples:
        >>> from online.drift_streams import Change, residual_stream
        >>> monitor = DriftMonitor(RESIDUAL_SETTINGS)
        >>> stream = residual_stream(3_000, seed=1, change=Change("abrupt", 2_000, 0.3))
        >>> [(i, e) for i, x in enumerate(stream) if (e := monitor.update(float(x)))]
        [(2010, 'warning'), (2025, 'drift')]
        >>> monitor.evidence()["detector"]
        'page_hinkley'
    """

    __slots__ = (
        "_adwin",
        "_adwin_last",
        "_before_n",
        "_before_sum",
        "_buffer",
        "_center",
        "_confirm",
        "_drifted",
        "_event",
        "_latched",
        "_ph_last",
        "_recent",
        "_scale",
        "_warn",
        "_warn_last",
        "_warned_at",
        "_z_n",
        "_z_sum",
        "seen",
        "settings",
    )

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings if settings is not None else RESIDUAL_SETTINGS
        self.reset()

    def reset(self) -> None:
        """Start afresh: a new warm-up, new detectors, no latched warning."""
        s = self.settings
        self.seen = 0
        self._buffer: array[float] | None = array("d") if s.warmup else None
        self._center = 0.0
        self._scale = 1.0
        self._warn = self._page_hinkley(s.warning_threshold, s.mode)
        self._confirm = None if s.confirm == "adwin" else self._page_hinkley(s.ph_threshold, s.mode)
        self._adwin = None if s.confirm == "ph" else drift.ADWIN(s.adwin_delta, s.adwin_clock)
        self._latched = False
        self._drifted = False
        self._warn_last = -1
        self._warned_at = 0
        self._ph_last = -(10**9)
        self._adwin_last = -(10**9)
        self._before_sum = 0.0
        self._before_n = 0
        self._z_sum = 0.0
        self._z_n = 0
        self._recent = math.nan
        self._event: dict[str, float | str | int] = {}

    def _page_hinkley(self, threshold: float, mode: str) -> drift.PageHinkley:
        s = self.settings
        return drift.PageHinkley(s.ph_min_instances, s.ph_delta, threshold, s.ph_alpha, mode)

    def update(self, x: float) -> str | None:
        """Feed one value; ``"warning"``, ``"drift"`` or ``None``.

        Non-finite values are ignored (``None``, not counted). After a drift every value
        returns ``None`` until :meth:`reset`.
        """
        if not math.isfinite(x):
            return None
        self.seen += 1
        if self._drifted:
            return None
        if self._buffer is not None:
            self._buffer.append(x)
            if len(self._buffer) >= self.settings.warmup:
                self._set_reference(self._buffer)
                self._buffer = None
            return None
        s = self.settings
        z = (x - self._center) / self._scale
        z = s.clip if z > s.clip else -s.clip if z < -s.clip else z
        self._recent = x if math.isnan(self._recent) else self._recent + _EW * (x - self._recent)
        self._warn.update(z)
        warned = self._warn.drift_detected
        confirmed = self._confirmed(z)
        self._z_sum += z
        self._z_n += 1
        if confirmed:
            self._drifted = True
            self._record("drift", confirmed)
            return "drift"
        if warned:
            self._warn_last = self.seen
            if not self._latched:
                self._latched = True
                self._warned_at = self.seen
                self._record("warning", "page_hinkley")
                return "warning"
        elif self._latched and self.seen - self._warn_last > s.warning_hold:
            self._latched = False
        if not self._latched:
            self._before_sum += x
            self._before_n += 1
        return None

    def _confirmed(self, z: float) -> str:
        """The confirming detector that fired on this value, ``""`` if none."""
        s = self.settings
        ph_hit = adwin_hit = False
        if self._confirm is not None:
            self._confirm.update(z)
            ph_hit = self._confirm.drift_detected
        if self._adwin is not None:
            # ADWIN's bound holds for values in [0, 1]: z is mapped there from the clip.
            self._adwin.update((z + s.clip) / (2.0 * s.clip))
            if self._adwin.drift_detected:
                # ADWIN cuts on a change either way; count only the way `mode` watches.
                before = self._z_sum / self._z_n if self._z_n else 0.0
                after = self._adwin.estimation * 2.0 * s.clip - s.clip
                adwin_hit = (
                    s.mode == "both"
                    or (s.mode == "up" and after > before)
                    or (s.mode == "down" and after < before)
                )
        if ph_hit:
            self._ph_last = self.seen
        if adwin_hit:
            self._adwin_last = self.seen
        if s.confirm == "ph":
            return "page_hinkley" if ph_hit else ""
        if s.confirm == "adwin":
            return "adwin" if adwin_hit else ""
        if s.confirm == "either":
            return "page_hinkley" if ph_hit else "adwin" if adwin_hit else ""
        both = (ph_hit or adwin_hit) and self.seen - min(self._ph_last, self._adwin_last) <= (
            s.warning_hold
        )
        return "page_hinkley+adwin" if both else ""

    def _set_reference(self, values: array[float]) -> None:
        center = statistics.median(values)
        mad = statistics.median(abs(v - center) for v in values)
        self._center = center
        self._scale = max(MAD_TO_SD * mad, self.settings.min_scale)

    def _record(self, tier: str, detector: str) -> None:
        s = self.settings
        threshold = s.ph_threshold if tier == "drift" else s.warning_threshold
        event: dict[str, float | str | int] = {
            "tier": tier,
            "detector": detector,
            "seen": self.seen,
            "warmup": s.warmup,
            "reference_median": round(self._center, 6),
            "reference_scale": round(self._scale, 6),
            "mean_before": round(self._before_sum / self._before_n, 6) if self._before_n else 0.0,
            "mean_after": round(self._recent, 6),
            "delta": s.ph_delta,
        }
        if detector != "adwin":
            event["threshold"] = threshold
        if "adwin" in detector and self._adwin is not None:
            event["adwin_delta"] = s.adwin_delta
            event["adwin_width"] = int(self._adwin.width)
        if tier == "drift":
            event["warned_at"] = self._warned_at if self._latched else self.seen
        self._event = event

    def evidence(self) -> dict[str, float | str | int]:
        """What fired last and why (JSON-serialisable); ``{"tier": "none", ...}`` before any.

        ``mean_before`` is the mean of the monitored values (signal units) before the
        warning, ``mean_after`` the recent mean (half-life 20 values) when it fired.
        """
        if self._event:
            return dict(self._event)
        return {"tier": "none", "seen": self.seen, "warming_up": int(self._buffer is not None)}

    def __getstate__(self) -> tuple[object, ...]:
        """The slots' values in order, the shipped settings by name: a link's state is
        written at every batch that touches it, and the default state (a dict of the
        slots, the settings' fields) took half again as long to pickle."""
        state = [getattr(self, name) for name in self.__slots__]
        state[self.__slots__.index("settings")] = _SHARED_NAMES.get(self.settings, self.settings)
        return tuple(state)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        if len(state) == 2 and state[0] is None and isinstance(state[1], dict):
            # written before __getstate__ existed: (None, {slot: value})
            state = tuple(state[1][name] for name in self.__slots__)
        for name, value in zip(self.__slots__, state, strict=True):
            if name == "settings" and isinstance(value, str):
                value = _SHARED[value]
            object.__setattr__(self, name, value)

    def dumps(self) -> bytes:
        """A snapshot of the whole monitor (pickle, protocol 5), for :meth:`loads`."""
        return pickle.dumps((FORMAT, self), protocol=5)

    @classmethod
    def loads(cls, blob: bytes) -> DriftMonitor:
        """The monitor :meth:`dumps` wrote; it continues exactly where that one stopped."""
        # Snapshots are written by NovaCron itself into the link state store, never taken
        # from a message: the pickle is trusted as the model artifacts are.
        loaded = pickle.loads(blob)  # noqa: S301
        if not (isinstance(loaded, tuple) and len(loaded) == 2 and loaded[0] == FORMAT):
            msg = f"A drift monitor snapshot must be a {FORMAT!r} blob. Got {type(loaded)!r}."
            raise ModelError(msg)
        monitor = loaded[1]
        if not isinstance(monitor, cls):
            msg = f"A drift monitor snapshot must hold a DriftMonitor. Got {type(monitor)!r}."
            raise ModelError(msg)
        return monitor


_EW = 1.0 - 0.5 ** (1.0 / RECENT_HALF_LIFE)
