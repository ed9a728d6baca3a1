"""Every kernel-vs-reference case of ``python -m blackwheel smoke``, as pytest cases
(the definitions live in blackwheel.testing.cases; nothing is duplicated here)."""
import pytest

from blackwheel.testing.cases import all_cases, run_case

CASES = all_cases()


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_matches_reference(case, cuda_device):
    res = run_case(case, cuda_device)
    if res.status == "skip":
        pytest.skip(res.message)
    detail = "; ".join(f"{c.label}: max_abs={c.max_abs:.3e} max_rel={c.max_rel:.3e} {c.detail}"
                       for c in res.checks)
    assert res.status == "pass", f"[{res.path}] {res.message} {detail}"
