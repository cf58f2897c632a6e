"""The alert lifecycle on hand-made anomaly scores: one alert per incident, evidence
k-of-n, updates under one id, severity memory, flapping, cooldown, floors, the new
normal, evidence of another type, and a dump/restore in the middle of an alert."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
import pytest

from agents.settings import Settings
from streams.alerts import (
    DOMINANT,
    EVENT_IDS_KEPT,
    SEVERITY_MEMORY,
    AlertPolicy,
    AlertTracker,
    metric_type,
    severity,
)
from streams.detector import AnomalyScore
from streams.records import MEASURES, MetricView

QUIET = 0.1
HIGH = 0.9

#: a policy whose parts the tests below can count exactly
POLICY = AlertPolicy(
    threshold=0.5,
    evidence_k=2,
    evidence_n=3,
    resolve_after=5,
    cooldown=10,
    update_every=1000,
    new_normal_after=0,
)


def scored(
    score: float,
    contributions: Mapping[str, float] | None = None,
    values: Mapping[str, float] | None = None,
) -> AnomalyScore:
    """An anomaly score whose metrics drive it in the given shares (default: all cpu)."""
    shares = dict(contributions or {"cpu_pct": 1.0})
    vals = dict(values or {})
    metrics = tuple(
        MetricView(name, vals.get(name, 50.0), 50.0, 40.0, 60.0, share)
        for name, share in shares.items()
    )
    return AnomalyScore(score, score, 1.0, {}, metrics, True, 1000)


@dataclass(frozen=True)
class Seen:
    """A transition as it was when the tracker emitted it (the alert object mutates)."""

    index: int
    status: str
    kind: str
    alert_id: str
    seq: int
    severity: str
    previous_severity: str | None
    resolution: str | None
    rebaseline: bool
    event_ids: tuple[str, ...]


def feed(tracker: AlertTracker, scores: Iterable[AnomalyScore], first_index: int = 0) -> list[Seen]:
    out: list[Seen] = []
    for i, s in enumerate(scores, start=first_index):
        for t in tracker.step(f"e{i}", 1.7e9 + 60.0 * i, s):
            out.append(
                Seen(
                    i,
                    t.status,
                    t.anomaly_type,
                    t.alert.alert_id,
                    t.alert.seq,
                    t.alert.severity,
                    t.previous_severity,
                    t.resolution,
                    t.rebaseline,
                    tuple(t.alert.event_ids),
                )
            )
    return out


def series(*parts: tuple[float, int]) -> list[AnomalyScore]:
    """Runs of ``(score, count)`` of cpu-driven scores."""
    return [scored(value) for value, count in parts for _ in range(count)]


def statuses(seen: Sequence[Seen]) -> list[tuple[int, str]]:
    return [(s.index, s.status) for s in seen]


# -- opening and resolving ----------------------------------------------------------


def test_one_open_per_incident_and_a_resolve_after_resolve_after_quiet_samples() -> None:
    scores = series((QUIET, 20), (HIGH, 10), (QUIET, 30), (HIGH, 10), (QUIET, 20))
    seen = feed(AlertTracker("h1", POLICY), scores)
    # open on the 2nd evidence sample, resolve on the resolve_after-th quiet one
    assert statuses(seen) == [
        (21, "open"),
        (29 + POLICY.resolve_after, "resolve"),
        (61, "open"),
        (69 + POLICY.resolve_after, "resolve"),
    ]
    first, second = seen[0].alert_id, seen[2].alert_id
    assert first != second
    assert [s.alert_id for s in seen] == [first, first, second, second]
    assert first == "h1:cpu:e21"
    assert all(s.kind == "cpu" for s in seen)
    assert [s.resolution for s in seen] == [None, "recovered", None, "recovered"]
    assert not any(s.rebaseline for s in seen)


def test_the_workers_policy_resolves_after_its_resolve_after_quiet_samples() -> None:
    policy = Settings().alert_policy()
    scores = series((QUIET, 10), (HIGH, 5), (QUIET, policy.resolve_after + 5))
    seen = feed(AlertTracker("h1", policy), scores)
    assert statuses(seen) == [(11, "open"), (14 + policy.resolve_after, "resolve")]


def test_no_alert_under_the_threshold() -> None:
    seen = feed(AlertTracker("h1", POLICY), series((POLICY.threshold - 1e-6, 200)))
    assert seen == []


def test_a_lone_spike_does_not_open_with_k2_of_n3() -> None:
    tracker = AlertTracker("h1", POLICY)
    lone = series((QUIET, 10), (HIGH, 1), (QUIET, 10))
    spaced = series((HIGH, 1), (QUIET, 2), (HIGH, 1), (QUIET, 2), (HIGH, 1), (QUIET, 10))
    assert feed(tracker, lone + spaced) == []
    # two of the last three is enough
    seen = feed(tracker, series((HIGH, 1), (QUIET, 1), (HIGH, 1)), first_index=100)
    assert statuses(seen) == [(102, "open")]


def test_evidence_k_equal_n_needs_consecutive_samples() -> None:
    policy = AlertPolicy(evidence_k=3, evidence_n=3, resolve_after=5, cooldown=0)
    flicker = series((HIGH, 2), (QUIET, 1)) * 10
    assert feed(AlertTracker("h1", policy), flicker) == []
    seen = feed(AlertTracker("h1", policy), series((HIGH, 3)))
    assert statuses(seen) == [(2, "open")]


# -- updates and severity -----------------------------------------------------------


def test_updates_keep_the_id_escalate_at_once_and_deescalate_after_severity_memory() -> None:
    scores = (
        series((0.55, 2))  # opens medium
        + series((0.95, 1))  # escalates at once
        + series((0.55, SEVERITY_MEMORY - 1))  # still remembered as critical
        + series((0.55, 1))  # the last SEVERITY_MEMORY samples are all lower: medium
        + series((0.55, 10))
    )
    seen = feed(AlertTracker("h1", POLICY), scores)
    assert [(s.index, s.status, s.severity, s.previous_severity, s.seq) for s in seen] == [
        (1, "open", "medium", None, 0),
        (2, "update", "critical", "medium", 1),
        (2 + SEVERITY_MEMORY, "update", "medium", "critical", 2),
    ]
    assert {s.alert_id for s in seen} == {"h1:cpu:e1"}


def test_severity_steps_up_band_by_band_with_increasing_seq() -> None:
    scores = series((0.3, 2), (0.5, 1), (0.7, 1), (0.9, 1))
    seen = feed(AlertTracker("h1", AlertPolicy(threshold=0.25, cooldown=0)), scores)
    assert [(s.status, s.severity, s.seq) for s in seen] == [
        ("open", "low", 0),
        ("update", "medium", 1),
        ("update", "high", 2),
        ("update", "critical", 3),
    ]
    assert len({s.alert_id for s in seen}) == 1


def test_a_long_alert_is_resent_every_update_every_samples() -> None:
    policy = AlertPolicy(update_every=10, resolve_after=3, cooldown=0, new_normal_after=0)
    seen = feed(AlertTracker("h1", policy), series((HIGH, 35), (QUIET, 3)))
    assert statuses(seen) == [(1, "open"), (11, "update"), (21, "update"), (31, "update"),
                              (37, "resolve")]  # fmt: skip
    assert [s.seq for s in seen] == [0, 1, 2, 3, 4]
    assert len({s.alert_id for s in seen}) == 1
    assert all(s.previous_severity == s.severity for s in seen if s.status == "update")


def test_an_alert_keeps_its_first_event_and_the_newest_evidence() -> None:
    policy = AlertPolicy(update_every=5, resolve_after=2, cooldown=0, new_normal_after=0)
    seen = feed(AlertTracker("h1", policy), series((HIGH, 40), (QUIET, 2)))
    last = seen[-1]
    assert last.status == "resolve"
    assert len(last.event_ids) == EVENT_IDS_KEPT
    assert last.event_ids[0] == "e1"  # the opening event
    assert last.event_ids[-1] == "e39"  # the newest evidence
    assert list(last.event_ids[1:]) == [f"e{i}" for i in range(39 - EVENT_IDS_KEPT + 2, 40)]


# -- flapping, cooldown, floors, new normal -----------------------------------------


def test_a_flapping_score_holds_one_alert_and_resolves_only_after_it_stops() -> None:
    policy = Settings().alert_policy()
    flapping = [scored(HIGH if i % 2 == 0 else QUIET) for i in range(60)]
    scores = series((QUIET, 20)) + flapping + series((QUIET, 40))
    seen = feed(AlertTracker("h1", policy), scores)
    during = [s for s in seen if s.index < 80]
    assert [s.status for s in during] == ["open"], during  # no update per flap, no resolve
    last_high = 20 + 58
    assert statuses(seen) == [(22, "open"), (last_high + policy.resolve_after, "resolve")]
    assert seen[0].alert_id == seen[1].alert_id


def test_cooldown_blocks_a_reopen_right_after_a_resolve() -> None:
    scores = series((HIGH, 5), (QUIET, POLICY.resolve_after), (HIGH, 30))
    seen = feed(AlertTracker("h1", POLICY), scores)
    resolved = 4 + POLICY.resolve_after
    assert statuses(seen) == [
        (1, "open"),
        (resolved, "resolve"),
        (resolved + POLICY.cooldown + 1, "open"),
    ]
    assert seen[2].alert_id != seen[0].alert_id


def test_an_alert_opens_only_on_an_evidence_sample() -> None:
    # the evidence gathered during the cooldown is 2 of 3 when it ends, on a quiet sample
    resolved = 1 + POLICY.resolve_after
    scores = series((HIGH, 2), (QUIET, POLICY.resolve_after), (HIGH, POLICY.cooldown))
    scores += series((QUIET, 20))
    seen = feed(AlertTracker("h1", POLICY), scores)
    assert statuses(seen) == [(1, "open"), (resolved, "resolve")]


def test_without_cooldown_a_new_incident_reopens_at_once() -> None:
    policy = AlertPolicy(resolve_after=2, cooldown=0, new_normal_after=0)
    seen = feed(AlertTracker("h1", policy), series((HIGH, 3), (QUIET, 2), (HIGH, 2)))
    assert statuses(seen) == [(1, "open"), (4, "resolve"), (6, "open")]


def test_cooldown_is_per_type() -> None:
    tracker = AlertTracker("h1", POLICY)
    cpu = series((HIGH, 3), (QUIET, POLICY.resolve_after))
    mem = [scored(HIGH, {"mem_pct": 1.0}) for _ in range(2)]
    seen = feed(tracker, cpu + mem)
    assert [(s.status, s.kind) for s in seen] == [
        ("open", "cpu"),
        ("resolve", "cpu"),
        ("open", "memory"),
    ]


def test_a_floored_metric_never_opens_an_alert_even_at_score_one() -> None:
    policy = Settings().alert_policy()
    assert policy.floors["cpu_pct"] == 20.0
    tracker = AlertTracker("h1", policy)
    idle = [scored(1.0, {"cpu_pct": 1.0}, {"cpu_pct": 15.0}) for _ in range(100)]
    assert feed(tracker, idle) == []
    # at the floor the metric counts again
    busy = [scored(1.0, {"cpu_pct": 1.0}, {"cpu_pct": 20.0}) for _ in range(2)]
    assert statuses(feed(tracker, busy, first_index=100)) == [(101, "open")]


def test_a_floor_on_one_metric_leaves_the_others_alone() -> None:
    policy = AlertPolicy(floors={"cpu_pct": 20.0}, cooldown=0)
    shares = {"cpu_pct": 0.3, "net_in_mbps": 0.7}
    idle = [scored(HIGH, shares, {"cpu_pct": 5.0}) for _ in range(2)]
    seen = feed(AlertTracker("h1", policy), idle)
    assert [(s.status, s.kind) for s in seen] == [("open", "network")]


def test_an_alert_lasting_new_normal_after_resolves_as_the_new_normal() -> None:
    policy = AlertPolicy(resolve_after=5, cooldown=10, update_every=1000, new_normal_after=20)
    seen = feed(AlertTracker("h1", policy), series((QUIET, 5), (HIGH, 40)))
    opened = 6
    assert statuses(seen)[:2] == [
        (opened, "open"),
        (opened + policy.new_normal_after - 1, "resolve"),
    ]
    resolve = seen[1]
    assert resolve.resolution == "new_normal"
    assert resolve.rebaseline is True
    assert resolve.alert_id == seen[0].alert_id
    # the level stays: after the cooldown it is a new alert, not the old one
    assert statuses(seen)[2] == (resolve.index + policy.cooldown + 1, "open")


def test_after_a_new_normal_the_evidence_starts_afresh() -> None:
    policy = AlertPolicy(cooldown=0, update_every=1000, new_normal_after=10)
    seen = feed(AlertTracker("h1", policy), series((HIGH, 30)))
    assert statuses(seen)[:3] == [(1, "open"), (10, "resolve"), (10 + policy.evidence_k, "open")]
    assert seen[1].resolution == "new_normal"


def test_new_normal_after_zero_never_rebaselines() -> None:
    policy = AlertPolicy(new_normal_after=0, update_every=5000)
    seen = feed(AlertTracker("h1", policy), series((HIGH, 2000)))
    assert statuses(seen) == [(1, "open")]


# -- evidence of another type ------------------------------------------------------


def test_evidence_of_another_type_stays_with_the_open_alert_unless_it_dominates() -> None:
    tracker = AlertTracker("h1", POLICY)
    seen = feed(tracker, series((HIGH, 2)))
    assert [(s.status, s.kind) for s in seen] == [("open", "cpu")]
    # memory drives most of the score, but under DOMINANT: the cpu alert holds it
    below = {"mem_pct": DOMINANT - 0.01, "cpu_pct": 0.3, "disk_io_mbps": 0.21}
    seen = feed(tracker, [scored(HIGH, below) for _ in range(30)], first_index=2)
    assert seen == []  # no memory alert and the cpu alert is not quiet
    # at DOMINANT the memory metric opens its own alert; the cpu one goes quiet
    at = {"mem_pct": DOMINANT, "cpu_pct": 0.3, "disk_io_mbps": 0.2}
    seen = feed(tracker, [scored(HIGH, at) for _ in range(10)], first_index=32)
    assert [(s.index, s.status, s.kind) for s in seen] == [
        (33, "open", "memory"),
        (31 + POLICY.resolve_after, "resolve", "cpu"),
    ]


def test_a_score_driven_by_another_type_leaves_the_open_alerts_severity() -> None:
    tracker = AlertTracker("h1", POLICY)
    assert statuses(feed(tracker, series((0.55, 2)))) == [(1, "open")]
    memory = scored(0.95, {"mem_pct": DOMINANT + 0.1, "cpu_pct": 1 - DOMINANT - 0.1})
    seen = feed(tracker, [memory, *series((0.55, 3))], first_index=2)
    assert seen == []  # the cpu alert stays medium; one memory sample opens nothing


def test_two_types_without_an_open_alert_go_to_the_largest() -> None:
    shares = {"mem_pct": 0.3, "net_in_mbps": 0.4, "cpu_pct": 0.3}
    seen = feed(AlertTracker("h1", POLICY), [scored(HIGH, shares) for _ in range(2)])
    assert [(s.status, s.kind) for s in seen] == [("open", "network")]


# -- persistence -------------------------------------------------------------------


def incident() -> list[AnomalyScore]:
    return (
        series((QUIET, 5), (0.55, 3), (0.95, 2), (0.55, 10))
        + [scored(HIGH if i % 2 else QUIET) for i in range(10)]
        + series((QUIET, 20), (HIGH, 20), (QUIET, 10))
    )


def cut_and_restore(scores: Sequence[AnomalyScore], cut: int) -> list[Seen]:
    first = AlertTracker("h1", POLICY)
    before = feed(first, scores[:cut])
    raw = first.dump()
    orjson.loads(raw)  # plain JSON
    again = AlertTracker.restore("h1", POLICY, raw)
    return before + feed(again, scores[cut:], first_index=cut)


def test_dump_and_restore_at_any_sample_changes_nothing() -> None:
    scores = incident()
    whole = feed(AlertTracker("h1", POLICY), scores)
    assert [s.status for s in whole].count("open") == 2
    for cut in range(len(scores) + 1):
        assert cut_and_restore(scores, cut) == whole, cut


@pytest.mark.parametrize("cut", [7, 9, 12, 15, 22, 25, 34])
def test_dump_and_restore_mid_alert_continues_the_same_alert(cut: int) -> None:
    scores = incident()
    whole = feed(AlertTracker("h1", POLICY), scores)
    assert cut_and_restore(scores, cut) == whole
    # the cut points are inside the first alert: it opened before and resolves after
    opened = whole[0]
    assert opened.status == "open" and opened.index < cut
    resolve = next(s for s in whole if s.status == "resolve")
    assert resolve.alert_id == opened.alert_id and resolve.index >= cut
    updates = [s for s in whole if s.alert_id == opened.alert_id and s.status == "update"]
    assert resolve.seq == len(updates) + 1
    assert [s.seq for s in whole if s.alert_id == opened.alert_id] == list(range(len(updates) + 2))


def test_restore_of_nothing_is_a_fresh_tracker() -> None:
    for raw in (None, b""):
        tracker = AlertTracker.restore("h1", POLICY, raw)
        assert tracker.types == {}
        assert statuses(feed(tracker, series((HIGH, 2)))) == [(1, "open")]


def test_dump_restore_during_cooldown_keeps_the_cooldown() -> None:
    tracker = AlertTracker("h1", POLICY)
    feed(tracker, series((HIGH, 2), (QUIET, POLICY.resolve_after)))
    again = AlertTracker.restore("h1", POLICY, tracker.dump())
    seen = feed(again, series((HIGH, POLICY.cooldown + 1)))
    assert statuses(seen) == [(POLICY.cooldown, "open")]


# -- severity bands and metric types -----------------------------------------------


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, None),
        (0.2, None),
        (0.2001, "low"),
        (0.4, "low"),
        (0.4001, "medium"),
        (0.6, "medium"),
        (0.6001, "high"),
        (0.8, "high"),
        (0.8001, "critical"),
        (1.0, "critical"),
    ],
)
def test_severity_bands(score: float, band: str | None) -> None:
    assert severity(score) == band


@pytest.mark.parametrize(
    ("metric", "kind"),
    [
        ("cpu_pct", "cpu"),
        ("load1", "cpu"),
        ("mem_pct", "memory"),
        ("swap_used_pct", "memory"),
        ("heap_mb", "memory"),
        ("disk_io_mbps", "disk"),
        ("io_wait_pct", "disk"),
        ("iops", "disk"),
        ("fs_used_pct", "disk"),
        ("net_in_mbps", "network"),
        ("requests_per_s", "network"),
        ("conn_active", "network"),
        ("rtt_ms", "network"),
        ("temp_c", "general"),
        ("value", "general"),
        ("gpu_util", "general"),
    ],
)
def test_metric_type(metric: str, kind: str) -> None:
    assert metric_type(metric) == kind


def test_every_link_measure_is_a_network_metric() -> None:
    assert {metric_type(m) for m in MEASURES} == {"network"}


def test_an_alert_opened_under_every_band_is_at_least_low() -> None:
    policy = AlertPolicy(threshold=0.1, cooldown=0)
    seen = feed(AlertTracker("h1", policy), series((0.15, 2)))
    assert [(s.status, s.severity) for s in seen] == [("open", "low")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"evidence_k": 4, "evidence_n": 3},
        {"evidence_k": 0},
        {"resolve_after": 0},
        {"update_every": 0},
        {"cooldown": -1},
    ],
)
def test_policy_refuses_settings_that_do_not_fit(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="alert|resolve_after"):
        AlertPolicy(**kwargs)  # type: ignore[arg-type]
