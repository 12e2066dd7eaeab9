"""The MIG memory table: every profile the issue names, with a source, consistent with GFD's labels."""

from __future__ import annotations

from importlib import resources

import yaml

from vramgate.placement import mig_profiles
from vramgate.placement.inventory import MigTable
from vramgate.sizing import find_gpu


def tables() -> list[MigTable]:
    text = resources.files("vramgate").joinpath("catalog", "mig.yaml").read_text()
    return [MigTable.model_validate(entry) for entry in yaml.safe_load(text)["mig"]]


def test_profiles_of_a100_40gb_a100_80gb_and_h100_are_all_there() -> None:
    profiles = {gpu: set(table) for gpu, table in mig_profiles().items()}
    assert profiles == {
        "a100-40gb": {"1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"},
        "a100-80gb": {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"},
        "h100-80gb": {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"},
    }


def test_every_table_has_a_source_and_names_a_catalog_gpu() -> None:
    for table in tables():
        assert "lgip" in table.source, table.gpu
        find_gpu(table.gpu)


def test_an_instance_holds_about_its_name_in_gb_and_less_than_its_gpu() -> None:
    for table in tables():
        gpu = find_gpu(table.gpu)
        for profile in table.profiles:
            named_gb = int(profile.name.split(".")[1].removesuffix("gb"))
            # The name rounds the instance's memory to GB: within 10% of it.
            assert abs(profile.memory_gib * 2**30 / (named_gb * 10**9) - 1) < 0.1, profile.name
            assert profile.memory_mib < gpu.memory_mib
            assert profile.slices == int(profile.name.split("g.")[0])


def test_gfd_labels_agree_with_the_table() -> None:
    """GFD's mig-<profile>.memory labels on an A100-SXM4-40GB (MiB): 1g.5gb 4864, 2g.10gb 9984, 3g 20096."""
    a100 = mig_profiles()["a100-40gb"]
    assert a100["1g.5gb"].memory_mib == 4864
    assert a100["2g.10gb"].memory_mib == 9984
    assert abs(a100["3g.20gb"].memory_mib - 20096) <= 6  # lgip prints 19.62 GiB, rounded
