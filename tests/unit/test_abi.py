"""abi-check pure logic: symbol resolution, policy gating, stable-shim rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from blackwheel_factory.checks import abi as A


def provider(name: str, kind: str, names: set[str]) -> A.Provider:
    return A.Provider(name, kind, names.__contains__)


@pytest.fixture(scope="module")
def policy() -> A.Policy:
    pytest.importorskip("auditwheel")
    return A.load_policy("manylinux_2_28")


@pytest.fixture
def providers():
    return [
        provider("libc10.so", "torch", {"_ZN3c106detail14torchCheckFailEPKcS2_jRKSs",
                                        "_ZNSt7__cxx1118basic_stringstreamIcSt11char_traitsIcESaIcEEC1Ev"}),
        provider("libtorch_cpu.so", "torch", {"aoti_torch_get_dim", "torch_call_dispatcher",
                                              "torch_internal_helper"}),
        provider("libcudart.so.13", "cuda", {"cudaMalloc"}),
        provider("libstdc++.so.6", "system",
                 {"_ZNSt7__cxx1118basic_stringstreamIcSt11char_traitsIcESaIcEEC1Ev"}),
    ]


SHIM = frozenset({"aoti_torch_get_dim", "torch_call_dispatcher"})


def res(sym, providers, policy, abi="classic"):
    return A.resolve_symbol(sym, providers, policy, abi, SHIM, ("libc10.so",))


def test_policy_comes_from_auditwheel_data(policy):
    import auditwheel.policy as ap
    data = json.loads(Path(ap.__file__).with_name("manylinux-policy.json").read_text())
    entry = next(p for p in data if p["name"] == "manylinux_2_28")
    assert policy.libs == frozenset(entry["lib_whitelist"])
    for prefix, versions in entry["symbol_versions"]["x86_64"].items():
        assert policy.versions[prefix] == frozenset(versions)
    newer = next(p for p in data if p["name"] == "manylinux_2_34")
    too_new = set(newer["symbol_versions"]["x86_64"]["GLIBC"]) - set(
        entry["symbol_versions"]["x86_64"]["GLIBC"])
    assert too_new and not any(policy.allows(f"GLIBC_{v}") for v in too_new)


def test_vendored_policy_data_is_auditwheels_subset():
    """The copy shipped for hosts without auditwheel equals what auditwheel says."""
    pytest.importorskip("auditwheel")
    data, _ = A._auditwheel_policy_data()
    assert json.loads(A.VENDORED_POLICY.read_text()) == A.vendored_policy_subset(data), (
        "re-derive it: python -m blackwheel_factory.checks.abi --write-policies")


def test_policy_without_auditwheel_comes_from_the_vendored_data(monkeypatch):
    monkeypatch.setattr(A, "_auditwheel_policy_data", lambda: (None, "auditwheel is not installed"))
    pol = A.load_policy(A.DEFAULT_POLICY)
    assert pol.name == A.DEFAULT_POLICY and "vendored" in pol.origin
    assert pol.allows("GLIBC_2.34") and "libc.so.6" in pol.libs
    assert A.load_policy("manylinux2014").name == "manylinux_2_17"
    assert A.load_policy("manylinux_2_28", "aarch64").allows("GLIBC_2.17")
    with pytest.raises(A.AbiError, match="vendored policy data"):
        A.load_policy("manylinux_1_0")
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        return
    monkeypatch.undo()
    assert A.load_policy(A.DEFAULT_POLICY) == pol     # the same Policy either way


def test_unknown_policy_names_fix():
    pytest.importorskip("auditwheel")
    with pytest.raises(A.AbiError, match=f"use e.g. {A.DEFAULT_POLICY}"):
        A.load_policy("manylinux_1_0")


@pytest.mark.parametrize("version,ok", [
    ("GLIBC_2.2.5", True), ("GLIBC_2.28", True), ("GLIBC_2.34", False), ("GLIBC_PRIVATE", False),
])
def test_glibc_versions(policy, providers, version, ok):
    r = res(A.Undef("dlsym", version, "libc.so.6"), providers, policy)
    assert r.ok is ok
    if not ok:
        assert r.problem == "version" and "manylinux_2_28 allows GLIBC up to" in r.detail


@pytest.mark.parametrize("version,ok", [("GLIBC_2.3", True), ("GLIBC_2.35", False)])
def test_dynamic_loader_symbols_follow_glibc_policy(policy, providers, version, ok):
    """__tls_get_addr comes from ld-linux (a -fPIC static libstdc++ needs it): glibc,
    checked against the policy's GLIBC versions although not in lib_whitelist."""
    assert "ld-linux-x86-64.so.2" not in policy.libs
    r = res(A.Undef("__tls_get_addr", version, "ld-linux-x86-64.so.2"), providers, policy)
    assert r.ok is ok
    assert (r.provider == "ld-linux-x86-64.so.2") if ok else (r.problem == "version")


def test_libstdcxx_versions(policy, providers):
    assert res(A.Undef("_ZNSt6locale", "GLIBCXX_3.4", "libstdc++.so.6"), providers, policy).ok
    bad = res(A.Undef("_ZSt28__throw_bad_array_new_lengthv", "GLIBCXX_3.4.29", "libstdc++.so.6"),
              providers, policy)
    assert bad.problem == "version"


def test_torch_cuda_and_driver_symbols_resolve(policy, providers):
    assert res(A.Undef("_ZN3c106detail14torchCheckFailEPKcS2_jRKSs"), providers, policy).provider == "libc10.so"
    assert res(A.Undef("cudaMalloc", "libcudart.so.13", "libcudart.so.13"), providers, policy).kind == "cuda"
    drv = A.resolve_symbol(A.Undef("cuTensorMapEncodeTiled"), providers, policy, "classic", SHIM,
                           ("libc10.so", "libcuda.so.1"))
    assert (drv.ok, drv.kind, drv.provider) == (True, "driver", "libcuda.so.1")


def test_driver_symbol_without_libcuda_needed_is_a_problem(policy, providers):
    """What the GPU host met (12-07): vLLM's _C linked against an empty libcuda stub that
    --as-needed dropped: 'undefined symbol: cuTensorMapEncodeTiled' at import, because
    torch loads libcuda.so.1 privately. The check names the missing NEEDED entry."""
    r = res(A.Undef("cuTensorMapEncodeTiled"), providers, policy)      # NEEDED: libc10.so only
    assert (r.ok, r.problem, r.expected) == (False, "unresolved", "libcuda.so.1")
    assert "not NEEDED" in A.describe_problem(r, "vllm/_C_stable_libtorch.abi3.so")
    weak = res(A.Undef("cuGetProcAddress", weak=True), providers, policy)
    assert weak.ok and weak.problem is None


def test_unresolved_symbol_names_expected_library(policy, providers):
    r = A.resolve(A.ElfInfo("x.so", ("libc10.so", "libc10_cuda.so"),
                            (A.Undef("_ZN3c104cuda12device_countEv"),)),
                  providers, policy, "classic", SHIM,
                  {"_ZN3c104cuda12device_countEv": "c10::cuda::device_count()"})[0]
    assert (r.problem, r.expected, r.demangled) == ("unresolved", "libc10_cuda.so",
                                                     "c10::cuda::device_count()")
    text = A.describe_problem(r, "/b/_x.abi3.so")
    assert text == ("_x.abi3.so: undefined symbol c10::cuda::device_count() "
                    "(expected in libc10_cuda.so): no provider defines it")


def test_python_c_api_only_for_python_extension_modules(policy, providers):
    """vLLM's spinloop/fs_io_C/cumem_allocator are CPython extension modules (they
    export PyInit_*): the interpreter provides Py*; an op library gets no such pass."""
    undef = (A.Undef("PyExc_TypeError"), A.Undef("_Py_Dealloc"), A.Undef("PyLong_FromLong"))
    module = A.ElfInfo("spinloop.abi3.so", ("libc.so.6",), undef, python_module=True)
    assert [(r.ok, r.kind) for r in A.resolve(module, providers, policy, "stable", SHIM)] == \
        [(True, "python")] * 3
    library = A.ElfInfo("_ops.abi3.so", ("libc.so.6",), undef)
    assert [r.problem for r in A.resolve(library, providers, policy, "stable", SHIM)] == \
        ["unresolved"] * 3


def test_weak_undefined_is_allowed(policy, providers):
    r = res(A.Undef("__gmon_start__", weak=True), providers, policy)
    assert r.ok and r.kind == "weak"
    assert not res(A.Undef("bw_strong_missing"), providers, policy).ok


@pytest.mark.parametrize("name,demangled,expected", [
    ("_ZN3c104cuda12device_countEv", "c10::cuda::device_count()", "libc10_cuda.so"),
    ("_ZN3c10xx", "c10::Foo::bar()", "libc10.so"),
    ("_ZN2at4cuda", "at::cuda::getCurrentCUDABlasHandle()", "libtorch_cuda.so"),
    ("_ZN2at5zeros", "at::zeros(...)", "libtorch_cpu.so"),
    ("aoti_torch_new_thing", "", "libtorch_cpu.so"),
    ("cudaLaunchKernel", "", "libcudart.so.13"),
    ("cuLaunchKernelEx", "", "libcuda.so.1"),
    ("foo", "", "one of libx.so"),
])
def test_expected_library(name, demangled, expected):
    assert A.expected_library(name, demangled, ["libx.so"]) == expected


# --- stable ABI -------------------------------------------------------------------------------
def test_stable_allows_shim_functions(policy, providers):
    for name in ("aoti_torch_get_dim", "torch_call_dispatcher"):
        assert res(A.Undef(name), providers, policy, "stable").ok


def test_stable_refuses_mangled_torch_symbol(policy, providers):
    r = res(A.Undef("_ZN3c106detail14torchCheckFailEPKcS2_jRKSs"), providers, policy, "stable")
    assert (r.problem, r.expected) == ("stable-abi", "libc10.so")
    r.demangled = "c10::detail::torchCheckFail(...)"
    assert A.describe_problem(r, "x.so") == (
        "x.so uses classic ABI symbol c10::detail::torchCheckFail(...) from libc10.so: the "
        "stable-ABI promise is broken (use the torch/csrc/stable API or the C shim)")
    # the same symbol is fine for a classic extension
    assert res(A.Undef("_ZN3c106detail14torchCheckFailEPKcS2_jRKSs"), providers, policy).ok


def test_stable_refuses_unmangled_torch_symbol_outside_shim(policy, providers):
    r = res(A.Undef("torch_internal_helper"), providers, policy, "stable")
    assert r.problem == "stable-abi" and "outside the stable C shim" in r.detail


def test_std_symbol_also_in_libstdcxx_is_not_torch_abi(policy, providers):
    """libc10 re-exports std:: template instances; libstdc++ defines them too."""
    r = res(A.Undef("_ZNSt7__cxx1118basic_stringstreamIcSt11char_traitsIcESaIcEEC1Ev"),
            providers, policy, "stable")
    assert r.ok and r.provider == "libstdc++.so.6"


def test_std_symbol_bound_only_to_torch_names_the_link_fix(policy):
    """Seen on a host whose g++ links libstdc++ statically: the linker bound
    basic_stringbuf::str() const& to torch 2.11's exported copy (no libstdc++ in NEEDED)."""
    name = "_ZNKRSt7__cxx1115basic_stringbufIcSt11char_traitsIcESaIcEE3strEv"
    only_torch = [provider("libtorch.so", "torch", {name})]
    r = A.resolve_symbol(A.Undef(name), only_torch, policy, "stable", SHIM, ("libtorch.so",),
                         "std::__cxx11::basic_stringbuf<char>::str() const &")
    assert r.problem == "stable-abi" and "link libstdc++ before torch" in r.detail


def test_parse_shim_names_from_header_text():
    text = """
    // AOTI_TORCH_EXPORT AOTITorchError aoti_torch_commented_out(int);
    /* AOTI_TORCH_EXPORT int torch_block_commented(void); */
    AOTI_TORCH_EXPORT AOTITorchError aoti_torch_get_dim(AtenTensorHandle t, int64_t* ret);
    AOTI_TORCH_EXPORT AOTITorchError
    torch_new_list_reserve_size(size_t size, StableListHandle* ret);
    AOTI_TORCH_EXPORT void aoti_torch_warn(const char* m);
    inline int aoti_torch_not_exported(void) { return 0; }
    typedef int torch_type_t;
    """
    assert A.parse_shim_names([text]) == {"aoti_torch_get_dim", "torch_new_list_reserve_size",
                                          "aoti_torch_warn"}


def test_shim_from_real_torch_headers():
    import importlib.util
    spec = importlib.util.find_spec("torch")
    if spec is None:
        pytest.skip("torch not installed")
    names, origin = A.load_shim(Path(list(spec.submodule_search_locations)[0]))
    assert names is not None and "shim headers" in origin
    # declared in torch/csrc/stable/c/shim.h and inductor/aoti_torch/c/shim.h respectively
    assert {"torch_call_dispatcher", "torch_library_impl", "aoti_torch_get_dim",
            "aoti_torch_empty_strided"} <= names
    assert all(n.startswith(("aoti_torch_", "torch_")) for n in names)


def test_shim_pattern_fallback_without_headers(tmp_path):
    names, origin = A.load_shim(tmp_path)
    assert names is None and "pattern" in origin
    assert A.in_shim("aoti_torch_anything", None) and not A.in_shim("_ZN3c10x", None)
    assert not A.in_shim("at_internal", None)


def test_torch_dir_errors_name_the_fix(tmp_path):
    with pytest.raises(A.AbiError, match="pass the torch package directory or its lib/"):
        A.find_torch_dir(tmp_path)
    (tmp_path / "lib").mkdir()
    assert A.find_torch_dir(tmp_path / "lib") == tmp_path
    assert A.find_torch_dir(tmp_path) == tmp_path


def test_non_elf_input(tmp_path):
    import io
    with pytest.raises(A.AbiError, match="not an ELF"):
        A.read_elf(io.BytesIO(b"not an elf at all" * 10), "x.so")
    with pytest.raises(A.AbiError, match="no such file"):
        A.iter_inputs(tmp_path / "missing.so", "auto")
