"""The hostile corpus offline: `vramgate check -f` refuses each case meant to be refused, naming the
field (or the reason), and passes each one meant to deploy. tests/e2e/test_hostile_corpus_online.py runs the
same files against the API server and the operator and requires the same outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.corpus import Case, load_cases, write_cases
from support.offline import Verdict, check_files

CASES = load_cases()


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    paths = write_cases(CASES, tmp_path_factory.mktemp("corpus"))
    by_path = check_files(list(paths.values()))
    return {name: by_path[path] for name, path in paths.items()}


def test_the_corpus_is_large_and_has_both_outcomes() -> None:
    assert len(CASES) >= 100
    assert sum(case.refused is None for case in CASES) >= 20
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_is_decided_offline_as_stated(case: Case, verdicts: dict[str, Verdict]) -> None:
    verdict = verdicts[case.name]
    if case.refused is None:
        assert verdict.allowed, verdict.message
    else:
        assert not verdict.allowed, f"accepted: {verdict.message}"
        assert case.refused in verdict.message
        assert len(verdict.message) < 4096, "a refusal is a sentence, not the input echoed back"


def test_the_files_are_what_a_user_would_apply(tmp_path: Path) -> None:
    paths = write_cases(CASES[:1], tmp_path)
    assert paths[CASES[0].name].read_text().startswith("apiVersion: vramgate.dev/v1alpha1\n")
