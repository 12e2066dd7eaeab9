"""The status block: phases, conditions that keep their transition time, what a rejection keeps."""

from __future__ import annotations

from typing import Any

from vramgate.decision import decide
from vramgate.handlers.status import (
    deployed_status,
    readiness,
    ready_condition,
    rejected_status,
    unchanged,
)

FITS: dict[str, Any] = {
    "kind": "LLMDeployment",
    "metadata": {"name": "falcon", "namespace": "team-a"},
    "spec": {
        "model": {"name": "tiiuae/falcon-7b"},
        "workload": {"maxSequenceLength": 1000, "concurrency": 100},
        "gpu": {"type": "A10G"},
    },
}
TOO_BIG = {**FITS, "spec": {**FITS["spec"], "workload": {"maxSequenceLength": 2048, "concurrency": 5000}}}


def deployment_status(available: int, replicas: int = 1, observed: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "falcon", "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"availableReplicas": available, "observedGeneration": observed},
    }


def test_deployed_status_carries_the_plan_summary_and_a_planned_condition() -> None:
    status = deployed_status(decide(FITS), deployment_status(0), previous={}, generation=3, now="T1")

    assert status["phase"] == "Deployed" and status["observedGeneration"] == 3
    assert status["plan"]["gpuType"] == "A10G" and status["plan"]["requiredBytesPerGpu"] > 0
    planned, ready = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "Unavailable")
    assert (planned["type"], planned["status"], planned["reason"], planned["lastTransitionTime"]) == (
        "Planned",
        "True",
        "Fits",
        "T1",
    )


def test_reconciling_again_keeps_the_transition_time_so_nothing_new_is_written() -> None:
    first = deployed_status(decide(FITS), deployment_status(0), previous={}, generation=1, now="T1")
    again = deployed_status(decide(FITS), deployment_status(0), previous=first, generation=1, now="T2")

    assert again == first


def test_a_spec_that_stopped_fitting_is_rejected_but_keeps_the_plan_in_force() -> None:
    deployed = deployed_status(decide(FITS), deployment_status(0), previous={}, generation=1, now="T1")

    rejected = rejected_status(decide(TOO_BIG), previous=deployed, generation=2, now="T2")

    assert rejected["phase"] == "Rejected" and "refused" in rejected["message"]
    assert rejected["plan"] == deployed["plan"] and rejected["deployment"] == "falcon"
    planned, ready = rejected["conditions"]
    assert ready == deployed["conditions"][1], "the Ready condition is carried as it stands"
    assert (planned["status"], planned["reason"], planned["lastTransitionTime"]) == (
        "False",
        "DoesNotFit",
        "T2",
    )


def test_readiness_follows_available_replicas_of_the_current_generation() -> None:
    assert readiness(None)[:2] == (False, "NoDeployment")
    assert readiness(deployment_status(available=0))[:2] == (False, "Unavailable")
    assert readiness(deployment_status(available=1))[:2] == (True, "Available")
    assert readiness(deployment_status(available=1, observed=0))[0] is False
    assert readiness(deployment_status(available=0, replicas=0))[:2] == (True, "ScaledToZero")


def test_ready_condition_transition_time_moves_only_when_its_status_does() -> None:
    waiting = ready_condition(deployment_status(0), previous={}, generation=1, now="T1")
    still = ready_condition(deployment_status(0), previous={"conditions": [waiting]}, generation=1, now="T2")
    ready = ready_condition(deployment_status(1), previous={"conditions": [still]}, generation=1, now="T3")

    assert (waiting["lastTransitionTime"], still["lastTransitionTime"], ready["lastTransitionTime"]) == (
        "T1",
        "T1",
        "T3",
    )


def test_unchanged_compares_only_what_is_written_and_conditions_by_type() -> None:
    deployed = deployed_status(decide(FITS), deployment_status(0), previous={}, generation=1, now="T1")
    stored = {**deployed, "conditions": list(reversed(deployed["conditions"])), "other": "kept"}

    assert unchanged(stored, deployed)
    assert not unchanged(stored, {**deployed, "observedGeneration": 2})
    assert not unchanged({}, deployed)
