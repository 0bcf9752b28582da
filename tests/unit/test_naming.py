from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberay_provider.core.naming import MAX_RAYJOB_NAME, is_dns1035_label, rayjob_name, submission_id


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
