"""Build-variant names: PEP 440 local labels from CUDA version and archs."""
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from blackwheel_factory.packaging.variant import local_label, variant_version


def test_label_orders_archs_and_names_cuda():
    assert local_label("13.0", ["12.0a"]) == "cu130.sm120a"
    assert local_label("13.0", ["12.0a", "9.0a"]) == "cu130.sm90a.sm120a"
    assert local_label("12.8", ["8.0+PTX", "8.9"]) == "cu128.sm80ptx.sm89"


def test_two_arch_builds_differ_and_both_match_the_public_pin():
    a = variant_version("2.8.3.post2", "13.0", ["12.0a"])
    b = variant_version("2.8.3.post2", "13.0", ["9.0a", "12.0a"])
    assert a != b
    assert all(Version(v) in SpecifierSet("==2.8.3.post2") for v in (a, b))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        local_label("13.0", [])
    with pytest.raises(ValueError):
        variant_version("0.1.0+local", "13.0", ["12.0a"])
