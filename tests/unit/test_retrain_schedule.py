"""Which retrain requests are coalesced, which wait for the cooldown, which are skipped
and why, and which offsets may be committed."""

from __future__ import annotations

import pytest

from models.retraining import RetrainHistory, RetrainRequest
from novacron.retrain_cli import parse_units
from novacron.retrain_records import skipped_event
from novacron.retrain_schedule import RetrainSchedule, commit_offsets, parse_request
from streams.errors import ConfigError

INTERNET = "bandwidth-lstm-internet"
DATACENTER = "bandwidth-lstm-datacenter"
NOW = 2.0e9


def req(
    request_id: str, ts: float = 1.8e9, model: str = INTERNET, mode: str = "internet"
) -> RetrainRequest:
    return RetrainRequest(request_id, model, mode, ts, "1", f"link-{request_id}", "drift")


def schedule(cooldown_s: float = 600.0, **histories: RetrainHistory) -> RetrainSchedule:
    return RetrainSchedule(cooldown_s, lambda name: histories.get(name, RetrainHistory()))


def test_requests_arriving_together_are_coalesced_into_one_retrain() -> None:
    s = schedule()
    assert s.admit(req("a"), (0, 10)) is None
    assert s.admit(req("b"), (0, 11)) is None
    assert s.admit(req("c", model=DATACENTER, mode="datacenter"), (1, 4)) is None
    skips, due = s.take_due(NOW)
    assert skips == [] and due is not None
    assert [r.request_id for r in due] == ["a", "b"]
    # One retrain at a time: the datacenter model waits until the internet one is done.
    assert s.take_due(NOW) == ([], None)
    assert sorted(s.unhandled()) == [(0, 10), (0, 11), (1, 4)]
    s.finished(INTERNET, RetrainHistory({"a": "2", "b": "2"}, NOW, 1.9e9, "2"))
    _, due = s.take_due(NOW + 1)
    assert due is not None and [r.request_id for r in due] == ["c"]


def test_cooldown_holds_new_evidence_for_the_next_retrain() -> None:
    last = RetrainHistory({"a": "2"}, last_started=NOW, covered_until=1.9e9, last_version="2")
    s = schedule(600.0, **{INTERNET: last})
    assert s.admit(req("late", ts=1.95e9), (0, 20)) is None
    assert s.take_due(NOW + 599) == ([], None)
    assert s.waiting() == {INTERNET: (1, NOW + 600)}
    assert s.unhandled() == [(0, 20)]
    _, due = s.take_due(NOW + 600)
    assert due is not None and [r.request_id for r in due] == ["late"]


def test_requests_arriving_during_a_retrain_are_covered_or_kept() -> None:
    s = schedule(0.0)
    s.admit(req("a", ts=1.80e9), (0, 1))
    _, due = s.take_due(NOW)
    assert due is not None
    s.admit(req("inside", ts=1.85e9), (0, 2))  # confirmed before the data's newest sample
    s.admit(req("after", ts=1.95e9), (0, 3))  # newer evidence than the retrain saw
    assert s.take_due(NOW) == ([], None)  # nothing is decided while the retrain runs
    s.finished(INTERNET, RetrainHistory({"a": "5"}, NOW, 1.9e9, "5"))
    skips, due = s.take_due(NOW + 1)
    assert [(k.kind, k.request_ids, k.version) for k in skips] == [("covered", ["inside"], "5")]
    assert due is not None and [r.request_id for r in due] == ["after"]


@pytest.mark.parametrize(
    ("request_", "kind", "why"),
    [
        (req("x", model="workload-classifier"), "unknown_model", "is not one retrain trains"),
        (req("x", mode="datacenter"), "mode_mismatch", "is not the mode of"),
        (req("done"), "already_handled", "handled by the retrain of v3"),
    ],
)
def test_requests_skipped_at_once_say_why(request_: RetrainRequest, kind: str, why: str) -> None:
    s = schedule(**{INTERNET: RetrainHistory({"done": "3"}, NOW, 1.0e9, "3")})
    skip = s.admit(request_, (0, 5))
    assert skip is not None and skip.kind == kind and why in skip.reason
    assert s.unhandled() == []
    event = skipped_event(skip)
    assert event.event == "retrain_skipped"
    assert event.detail["request_ids"] == [request_.request_id]
    assert event.detail["kind"] == kind


def test_commit_stops_at_the_first_unhandled_request() -> None:
    assert commit_offsets({0: 50, 1: 7}, []) == {0: 50, 1: 7}
    assert commit_offsets({0: 50, 1: 7}, [(0, 42), (0, 12)]) == {0: 12, 1: 7}


def test_parse_request_fills_what_the_record_leaves_out() -> None:
    value = {
        "event": "retrain_requested",
        "model": {"name": DATACENTER, "version": "4"},
        "ts": 1.8e9,
        "detail": {"key": "dc-1"},
    }
    parsed = parse_request(value, "model.events.v1:2:17")
    assert parsed == RetrainRequest(
        "model.events.v1:2:17", DATACENTER, "datacenter", 1.8e9, "4", "dc-1", ""
    )


@pytest.mark.parametrize("text", ["32", "32,16,8", "a,b", "0,4", "-1,4"])
def test_units_option_refuses_what_is_not_two_positive_ints(text: str) -> None:
    with pytest.raises(ConfigError, match="'--units' option must be two positive integers"):
        parse_units(text)
