"""The decision in a cluster: refusals name the inventory, preferences, warnings, the escape hatch and
multi-node models that need LeaderWorkerSet."""

from __future__ import annotations

from typing import Any

from support.nodes import gpu_node, gpu_pod
from vramgate.decision import SKIP_MEMORY_CHECK_ANNOTATION, DecisionContext, decide
from vramgate.manifests import deployment, gpu_limits, leader_worker_set, service
from vramgate.placement import Inventory, PlacementMode, PlacementPolicy


def resource(gpu: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vramgate.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": "team-a", "uid": "u-1"},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "workload": {"maxSequenceLength": 4096, "concurrency": 8},
            "gpu": gpu or {},
            **spec,
        },
    }


def small_cluster(*pods: dict[str, Any]) -> DecisionContext:
    nodes = [gpu_node("a10g-0", "NVIDIA-A10G", 23028, 2), gpu_node("l4-0", "NVIDIA-L4", 23034, 1)]
    return DecisionContext(inventory=Inventory.from_objects(nodes, pods), lws_installed=True)


def test_a_model_no_present_type_holds_is_refused_naming_the_cluster_then_what_to_add() -> None:
    big = resource(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
        workload={"maxSequenceLength": 8192, "concurrency": 32},
    )
    decision = decide(big, small_cluster())
    assert not decision.allowed and decision.field is None
    assert decision.message.startswith(
        "LLMDeployment team-a/chat refused: the cluster has 1 node of L4 (1 of 1 GPUs free), 1 node of A10G "
        "(2 of 2 GPUs free); none holds meta-llama/Llama-3.1-70B-Instruct (bf16) for 32 x 8192 tokens."
    )
    assert "Closest: " in decision.message and "needs " in decision.message
    assert " Or add " in decision.message  # a catalog type, re-checked by planning


def test_preferences_skip_a_full_type_and_the_status_records_why() -> None:
    context = small_cluster(gpu_pod("a10g-0", 2))
    decision = decide(resource({"preferences": [{"type": "A10G"}, {"type": "L4"}]}), context)
    assert decision.allowed and decision.plan is not None and decision.plan.gpu_type == "L4"
    assert decision.placement is not None and decision.placement.chosen == 1
    [skipped] = decision.placement.skipped
    assert skipped.type == "A10G" and "no node has 1 free (0 of 2 free)" in skipped.reason


def test_a_pinned_type_without_free_gpus_is_admitted_with_a_pending_warning() -> None:
    decision = decide(resource({"type": "L4"}), small_cluster(gpu_pod("l4-0", 1)))
    assert decision.allowed
    assert any("stays Pending" in warning for warning in decision.warnings)


def test_catalog_mode_warns_about_a_type_the_cluster_lacks() -> None:
    context = DecisionContext(
        inventory=small_cluster().inventory,
        placement=PlacementPolicy(mode=PlacementMode.CATALOG, catalog_types=("H100-80GB",)),
    )
    decision = decide(resource(), context)
    assert decision.allowed and any("no node of H100-80GB" in w for w in decision.warnings)


def test_preferences_with_a_type_are_refused_by_the_rule() -> None:
    decision = decide(resource({"type": "L4", "preferences": [{"type": "A10G"}]}))
    assert (decision.allowed, decision.field) == (False, "spec.gpu")
    assert "set type or preferences, not both" in decision.message


def test_skip_memory_check_is_refused_outside_the_permitted_namespaces() -> None:
    too_big = resource({"type": "L4"}, workload={"maxSequenceLength": 131072, "concurrency": 64})
    too_big["metadata"]["annotations"] = {SKIP_MEMORY_CHECK_ANNOTATION: "true"}
    decision = decide(too_big, small_cluster())
    assert not decision.allowed
    assert decision.field == f"metadata.annotations[{SKIP_MEMORY_CHECK_ANNOTATION}]"
    assert "not permitted in namespace team-a" in decision.message
    assert "VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES" in decision.message


def test_skip_memory_check_admits_with_the_numbers_it_overrode() -> None:
    too_big = resource({"type": "L4"}, workload={"maxSequenceLength": 131072, "concurrency": 64})
    too_big["metadata"]["annotations"] = {SKIP_MEMORY_CHECK_ANNOTATION: "true"}
    context = DecisionContext(inventory=small_cluster().inventory, skip_check_namespaces=("team-a",))
    decision = decide(too_big, context)
    assert decision.allowed and decision.plan is not None and not decision.plan.fits
    assert decision.memory_check_skipped is not None and "needs " in decision.memory_check_skipped
    [warning] = decision.warnings
    assert warning.startswith("memory check skipped (vramgate.dev/skip-memory-check): without it, ")


def deepseek() -> dict[str, Any]:
    return resource(
        model={"name": "deepseek-ai/DeepSeek-V3", "precision": "fp8"},
        workload={"maxSequenceLength": 16384, "concurrency": 8},
    )


def h100_nodes(lws: bool | None) -> DecisionContext:
    nodes = [gpu_node(f"h100-{i}", "NVIDIA-H100-80GB-HBM3", 81559, 8) for i in range(2)]
    return DecisionContext(inventory=Inventory.from_objects(nodes), lws_installed=lws)


def test_a_model_larger_than_a_node_is_refused_without_leaderworkerset() -> None:
    decision = decide(deepseek(), h100_nodes(lws=False))
    assert not decision.allowed
    assert "needs 2 nodes of 8 x H100-80GB" in decision.message
    assert "leaderworkersets.leaderworkerset.x-k8s.io CustomResourceDefinition is missing" in decision.message


def test_a_model_larger_than_a_node_becomes_a_leaderworkerset() -> None:
    owner = deepseek()
    decision = decide(owner, h100_nodes(lws=True))
    assert decision.allowed and decision.plan is not None and decision.placement is not None
    assert decision.placement.nodes == 2 and decision.spec is not None
    lws = leader_worker_set(owner, decision.spec, decision.plan, decision.placement)
    # LeaderWorkerSet's controller takes a Service of the set's name as the headless one its workers resolve
    # their leader through: the set is named apart from the server's ClusterIP Service, which keeps the name.
    name = owner["metadata"]["name"]
    assert lws["metadata"]["name"] == f"{name}-lws"
    assert service(owner, decision.spec, leader_only=True)["metadata"]["name"] == name
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert (
        leader["resources"]["limits"]["nvidia.com/gpu"]
        == 8
        == worker["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert "--ray_cluster_size=$(LWS_GROUP_SIZE)" in leader["command"][2]
    assert leader["command"][2].endswith('; exec "$@"') and leader["command"][3:] == ["sh"]
    assert "--tensor-parallel-size=8" in leader["args"] and "--pipeline-parallel-size=2" in leader["args"]
    assert "--ray_address=$(LWS_LEADER_ADDRESS)" in worker["command"][2] and "readinessProbe" not in worker
    assert "args" not in worker


def test_a_leaders_extra_arguments_reach_the_server_as_arguments_not_shell_text() -> None:
    """The kubelet expands $(VAR) in a container's command and arguments; had an argument been part of
    the `sh -c` text, a variable holding a quote could have ended it and run a command of its own."""
    owner = deepseek()
    owner["spec"]["runtime"] = {"extraArgs": ["--served-model-name=$(NAME)", "--api-key=it's"]}
    decision = decide(owner, h100_nodes(lws=True))
    assert decision.allowed and decision.spec and decision.plan and decision.placement
    lws = leader_worker_set(owner, decision.spec, decision.plan, decision.placement)
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert "$(NAME)" not in leader["command"][2] and "it's" not in leader["command"][2]
    assert leader["args"][-2:] == ["--served-model-name=$(NAME)", "--api-key=it's"]
    assert leader["args"][:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert service(owner, decision.spec, leader_only=True)["spec"]["selector"]["role"] == "leader"


def test_mig_and_hami_placements_request_their_resources() -> None:
    mig_node = gpu_node("mig-0", "NVIDIA-A100-SXM4-40GB", 40960, 0, **{"nvidia.com/mig-3g.20gb": "2"})
    tiny = resource(model={"name": "Qwen/Qwen3-0.6B"}, workload={"maxSequenceLength": 2048, "concurrency": 4})
    decision = decide(tiny, DecisionContext(inventory=Inventory.from_objects([mig_node])))
    assert decision.allowed and decision.plan is not None and decision.spec is not None
    generated = deployment(tiny, decision.spec, decision.plan, decision.placement)
    pod = generated["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-3g.20gb": 1}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}

    hami_node = gpu_node("l4-0", "NVIDIA-L4", 23034, 10, **{"nvidia.com/gpumem": "23034"})
    shared = decide(
        tiny,
        DecisionContext(inventory=Inventory.from_objects([hami_node]), placement=PlacementPolicy(hami=True)),
    )
    assert shared.plan is not None and shared.placement is not None
    limits = gpu_limits(shared.plan, shared.placement)
    assert limits["nvidia.com/gpu"] == 1 and 0 < limits["nvidia.com/gpumem"] < 23034
    assert "HAMi share of one L4" in shared.message


def named(name: str, replicas: int) -> dict[str, Any]:
    owner = deepseek()
    owner["metadata"]["name"] = name
    owner["spec"]["replicas"] = replicas
    return owner


def test_a_leaderworkerset_name_leaves_room_for_its_worker_pods_revision_label() -> None:
    # <name>-lws-<last group>-<10-digit hash> must be a label value of at most 63 characters.
    assert decide(named("n" * 46, 1), h100_nodes(lws=True)).allowed
    assert decide(named("n" * 45, 100), h100_nodes(lws=True)).allowed
    for name, replicas in (("n" * 47, 1), ("n" * 46, 100), ("n" * 45, 1000)):
        decision = decide(named(name, replicas), h100_nodes(lws=True))
        assert not decision.allowed and decision.field == "metadata.name", (len(name), replicas)
        limit = 63 - 11 - len(f"-{replicas - 1}") - len("-lws")
        assert f"has {len(name)} characters" in decision.message
        assert f"with {replicas} replicas its worker pods start only under names of at most {limit}" in (
            decision.message
        )


def test_a_long_name_on_one_node_stays_a_deployment_and_is_admitted() -> None:
    owner = resource()
    owner["metadata"]["name"] = "n" * 63
    assert decide(owner, small_cluster()).allowed
