"""The process-wide registries: one instance each, one reset name, HeTu's names kept."""

import pytest

from hetu.common.registry import Registry
from hetu.data.component import ComponentDefines
from hetu.endpoint.definer import EndpointDefines
from hetu.system.definer import SystemClusters


class Names(Registry):
    def _create_tables(self) -> None:
        self.names: list[str] = []

    def clear(self) -> None:
        self.names = []


class OtherNames(Names):
    pass


@pytest.mark.parametrize("registry", [ComponentDefines, EndpointDefines, SystemClusters, Names])
def test_a_registry_has_one_instance_per_process(registry):
    assert registry() is registry()


def test_a_subclass_gets_its_own_instance():
    assert OtherNames() is not Names() and isinstance(OtherNames(), Names)


@pytest.mark.parametrize("old_name", ["clear_", "_clear"])
def test_hetus_reset_names_call_clear(old_name):
    Names().names.append("a")
    getattr(Names(), old_name)()
    assert Names().names == []
