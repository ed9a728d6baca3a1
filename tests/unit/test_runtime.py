"""The runtime boundary: one runtime (python/blackwheel_runtime) under every product,
the factory above it, no import circles, the same doctor for every product.

Static checks read the sources (AST: every import, function-level ones included);
the doctor and refusal checks run real interpreters on installed-like layouts.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from blackwheel_runtime import record as R

REPO = Path(__file__).resolve().parents[2]
PY = REPO / "python"
RUNTIME_PACKAGES = ("blackwheel", "flash_attn_2_cuda", "blackwheel_runtime")
LOCK = {"version": "2.14.1+cu130", "git_version": "5c4886908584029761b579af026dcfb627c84070",
        "cuda": "13.0", "cxx11_abi": True, "stable_target": "2.11"}


def _modules(package: str) -> dict[str, Path]:
    """dotted name -> file of every module of a package in python/ (symlinked _runtime
    folders excluded: they are the runtime package itself)."""
    root = PY / package
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(PY)
        if "_runtime" in rel.parts[1:-1] or "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported dotted name, line) of every import in a module, relative ones resolved;
    ``from P import a, b`` gives P.a and P.b (the edge resolver falls back to P when
    P.a is not a module)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[:len(base) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names]
    return out


def _resolve(mod: str) -> str:
    """The module of ALL an import lands in: <product>._runtime.X is the runtime's X."""
    head, sep, rest = mod.partition("._runtime")
    if sep and head in ("blackwheel", "flash_attn_2_cuda"):
        mod = "blackwheel_runtime" + rest
    while mod and mod not in ALL:
        mod = mod.rpartition(".")[0]
    return mod


ALL = {k: v for p in RUNTIME_PACKAGES for k, v in _modules(p).items()}


def test_runtime_code_never_imports_the_factory():
    bad = [f"{path.relative_to(REPO)}:{line}: {mod}" for name, path in ALL.items()
           for mod, line in _imports(name, path) if mod.split(".")[0] == "blackwheel_factory"]
    assert not bad, "runtime code imports the build factory:\n" + "\n".join(bad)


def test_the_runtime_imports_only_itself_and_the_standard_library():
    """So that its copy works under any name (<package>/_runtime) and needs nothing installed."""
    allowed = set(sys.stdlib_module_names) | {"blackwheel_runtime", "packaging", "torch"}
    bad = [f"{path.relative_to(REPO)}:{line}: {mod}"
           for name, path in _modules("blackwheel_runtime").items()
           for mod, line in _imports(name, path) if mod.split(".")[0] not in allowed]
    assert not bad, "\n".join(bad)
    absolute = [f"{p.relative_to(REPO)}:{n.lineno}" for p in (PY / "blackwheel_runtime").glob("*.py")
                for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and not n.level and n.module
                and n.module.startswith("blackwheel_runtime")]
    assert not absolute, f"absolute imports of the runtime inside it (use relative ones): {absolute}"


def test_no_import_circle_in_runtime_code():
    """Edges: every import of a module of these packages (function-level ones too), to the
    module itself, or to the package when the name is not a module."""
    graph: dict[str, set[str]] = {}
    for name, path in ALL.items():
        edges = set()
        for mod, _ in _imports(name, path):
            mod = _resolve(mod)
            if mod and mod != name:
                edges.add(mod)
        graph[name] = edges
    cycles = []

    def visit(node, stack, seen):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)
    for start in graph:
        visit(start, [start], {start})
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles[:5])
    # the one that existed: ops <-> marlin_fp4 (now both over _dispatch)
    assert "blackwheel.ops" not in graph["blackwheel.marlin_fp4"]
    assert "blackwheel._dispatch" in graph["blackwheel.marlin_fp4"]


def test_the_factory_depends_on_the_runtime():
    from blackwheel_factory.inputs import lock
    from blackwheel_factory.plan import archs
    from blackwheel_runtime import archs as runtime_archs
    from blackwheel_runtime import torch_lock
    assert lock.compare is torch_lock.compare and archs.runnable is runtime_archs.runnable


def test_every_product_has_the_runtime_beside_its_package_in_the_checkout():
    for package in R.PRODUCTS.values():
        if (PY / package).is_dir():
            link = PY / package / "_runtime"
            assert link.is_symlink() and os.readlink(link) == "../blackwheel_runtime", link


def test_the_runtime_knows_every_product_record():
    """PRODUCTS (one line per product) covers every products/*.toml, the kernel pack's too."""
    from blackwheel_factory.inputs.products import KERNEL_PACK, load_product, product_names
    assert KERNEL_PACK in product_names(REPO)
    expected = {}
    for name in product_names(REPO):
        product, _ = load_product(name, REPO)
        expected[product.dist] = product.record_package
    assert R.PRODUCTS == expected, ("add the missing product to PRODUCTS in "
                                    "python/blackwheel_runtime/record.py")


def _record(dist: str | None, family: str, archs: list[str]) -> dict:
    info = {"schema": 1, "blackwheel_version": "0.1.0", "archs": archs, "abi": "stable",
            "kernels": {family: {"archs": archs, "abi": "stable", "library": "x.abi3.so",
                                 "ops": ["op"]}},
            "torch": {"lock": LOCK, "requirement": "torch>=2.11"},
            "toolchain": {"nvcc_version": "13.0.88"}}
    info["product"] = ({"name": "kernel-pack", "dist": "blackwheel"} if dist is None else
                       {"name": dist, "dist": dist, "version": f"2.8.3.post2+cu130.sm120a"})
    return info


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Both products as a wheel installs them (the runtime copied into each, no factory),
    each with a build record; kernels listed in no record, so nothing loads."""
    site = tmp_path_factory.mktemp("site")
    for package in ("blackwheel", "flash_attn_2_cuda"):
        shutil.copytree(PY / package, site / package,          # follows the _runtime symlink
                        ignore=shutil.ignore_patterns("__pycache__", "_build_info.json"))
    kp = _record(None, "marlin_fp4", ["12.0a"])
    kp["kernels"] = {}
    (site / "blackwheel" / R.RECORD_NAME).write_text(json.dumps(kp))
    (site / "flash_attn_2_cuda" / R.RECORD_NAME).write_text(
        json.dumps(_record("flash-attn", "flash_attn_2", ["12.0a", "9.0a"])))
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=site)


def test_doctor_is_one_answer_for_every_product(site):
    pytest.importorskip("torch")
    a = _run(site, "-m", "blackwheel", "doctor", "--json")
    b = _run(site, "-m", "flash_attn_2_cuda", "doctor", "--json")
    assert a.returncode in (0, 1) and a.stderr == "", a.stderr
    assert a.stdout == b.stdout and a.returncode == b.returncode
    lines = json.loads(a.stdout)
    assert {x["product"] for x in lines} == {"blackwheel 0.1.0", "flash-attn 2.8.3.post2+cu130.sm120a"}
    texts = [x["text"] for x in lines]
    assert "flash-attn 2.8.3.post2+cu130.sm120a: archs 12.0a, 9.0a (flash_attn_2_cuda/_build_info.json)" in texts
    # the locked torch fits both; this machine's GPU/driver are reported, not raised
    assert sum(t.startswith("torch: torch 2.14.1+cu130") and "fits torch>=2.11" in t for t in texts) == 2
    assert sum(t.startswith("driver: ") for t in texts) == 2
    only = json.loads(_run(site, "-m", "blackwheel", "doctor", "--json", "--product", "flash-attn").stdout)
    assert {x["product"] for x in only} == {"flash-attn 2.8.3.post2+cu130.sm120a"}


def test_info_of_each_product(site):
    r = _run(site, "-m", "flash_attn_2_cuda", "info")
    assert r.returncode == 0 and r.stdout.startswith("flash-attn 2.8.3.post2+cu130.sm120a"), r.stderr
    r = _run(site, "-m", "blackwheel", "info", "--product", "flash-attn", "--json")
    assert json.loads(r.stdout)["product"]["dist"] == "flash-attn"
    r = _run(site, "-m", "blackwheel", "info")
    assert r.returncode == 0 and r.stdout.startswith("blackwheel 0.1.0"), r.stderr


def test_import_loads_no_factory_module(site):
    pytest.importorskip("torch")
    code = ("import sys, blackwheel, flash_attn_2_cuda\n"
            "print(sorted(m for m in sys.modules if m.startswith('blackwheel_factory')))\n"
            "print(flash_attn_2_cuda._runtime.__file__)")
    r = _run(site, "-c", code)
    assert r.returncode == 0, r.stderr
    factory, runtime = r.stdout.splitlines()
    assert factory == "[]" and runtime.startswith(str(site / "flash_attn_2_cuda" / "_runtime"))


def test_a_factory_command_asked_of_a_product_names_where_it_lives(site):
    r = _run(site, "-m", "blackwheel", "verify", "x.whl")
    assert r.returncode == 2
    assert "'verify' is a factory command" in r.stderr
    assert "python -m blackwheel_factory verify" in r.stderr


def test_the_factory_distribution_holds_the_factory_and_the_runtime_only(tmp_path):
    """python/pyproject.toml: `pip install ./python` gives the blackwheel-factory script."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        str(PY), "-w", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = tmp_path.glob("blackwheel_factory-0.1.0-py3-none-any.whl")
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        entry = z.read("blackwheel_factory-0.1.0.dist-info/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"blackwheel_factory", "blackwheel_runtime",
                                               "blackwheel_factory-0.1.0.dist-info"}
    assert "blackwheel_factory/policies/verify.toml" in names
    assert "blackwheel_factory/resources/product/pyproject.toml.in" in names
    assert "blackwheel-factory = blackwheel_factory.cli:main" in entry
    assert not (PY / "build").exists()               # nothing written into the checkout
