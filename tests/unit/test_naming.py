from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberay_provider.core.naming import (
    LABEL_MAP_INDEX,
    LABEL_OWNER,
    LABEL_TASK,
    MAX_RAYJOB_NAME,
    UNMAPPED,
    is_dns1035_label,
    label_value,
    rayjob_name,
    submission_id,
    task_labels,
)


def test_name_is_stable_for_one_run_and_distinct_across_runs():
    first = rayjob_name("nightly_scoring", "score", "scheduled__2026-11-24T00:00:00+00:00")
    assert first == rayjob_name("nightly_scoring", "score", "scheduled__2026-11-24T00:00:00+00:00")
    assert first != rayjob_name("nightly_scoring", "score", "scheduled__2026-11-25T00:00:00+00:00")
    assert first.startswith("nightly-scoring-score-")


def test_map_index_distinguishes_and_minus_one_means_unmapped():
    base = rayjob_name("d", "t", "r")
    assert rayjob_name("d", "t", "r", -1) == base
    assert len({base, rayjob_name("d", "t", "r", 0), rayjob_name("d", "t", "r", 1)}) == 3


def test_long_identity_fits_kuberay_limit():
    name = rayjob_name("a" * 200, "b" * 200, "run")
    assert len(name) <= MAX_RAYJOB_NAME and is_dns1035_label(name)


@pytest.mark.parametrize("owner", ["", "123", "__", "Ünïcode", "-x-"])
def test_awkward_owners_still_give_valid_names(owner: str):
    assert is_dns1035_label(rayjob_name(owner, "9task", "r"), MAX_RAYJOB_NAME)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text(), st.one_of(st.none(), st.integers(min_value=-1, max_value=10_000)))
def test_any_identity_gives_a_valid_name(owner: str, task: str, run: str, index: int | None):
    name = rayjob_name(owner, task, run, index)
    assert is_dns1035_label(name, MAX_RAYJOB_NAME)
    assert len(submission_id(name)) <= 63


def test_valid_label_values_are_kept_and_others_cleaned_with_a_digest():
    assert label_value("nightly_scoring.v2") == "nightly_scoring.v2"
    scheduled = label_value("scheduled__2026-11-24T00:00:00+00:00")
    assert scheduled.startswith("scheduled__2026-11-24T00_00_00_00_00-") and is_label_value(scheduled)
    assert label_value("a:b") != label_value("a+b")
    long_run = label_value("manual__" + "x" * 200)
    assert len(long_run) == 63 and long_run == label_value("manual__" + "x" * 200)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_a_valid_label_value(text: str):
    assert is_label_value(label_value(text))


def test_task_labels_name_the_run_and_unmapped_tasks():
    labels = task_labels("nightly", "score", "manual__2026-01-01T00:00:00+00:00", -1)
    assert labels[LABEL_OWNER] == "nightly" and labels[LABEL_TASK] == "score" and labels[LABEL_MAP_INDEX] == UNMAPPED
    assert task_labels("d", "t", "r", 4)[LABEL_MAP_INDEX] == "4"
    assert all(is_label_value(value) for value in labels.values())


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value) is not None
