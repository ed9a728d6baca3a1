"""`abi-check`: resolve every undefined dynamic symbol of a wheel's extensions.

Providers, in order: the locked torch's libtorch*/libc10* (torch/lib), the CUDA
runtime (libcudart.so.13 and any other NEEDED library from nvidia/*/lib), the
driver API (cu* names of libcuda.so.1, allowed by name where libcuda.so.1 is
NEEDED: the driver is not installed on build hosts), and the system libraries
with the symbol versions the manylinux policy allows (auditwheel's policy JSON). Stable-ABI extensions
may use torch only through the C shim (aoti_torch_* / torch_* functions declared
AOTI_TORCH_EXPORT in the shim headers); any other torch symbol is a violation.

Pure core: ``resolve(elf, providers, policy, abi, shim)`` over plain data and
lookup callables. Effects: pyelftools readers, library discovery, c++filt, CLI.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

def _project_policy() -> str:
    """The manylinux policy of the project's repair step (policies/repair.toml):
    one source of truth for the platform the wheel claims."""
    try:
        from blackwheel_factory.packaging.repair import load_policy
        return load_policy().plat.removesuffix("_x86_64").removesuffix("_aarch64")
    except Exception:  # pragma: no cover - policy file missing
        return "manylinux_2_28"


DEFAULT_POLICY = _project_policy()
_DRIVER_RE = re.compile(r"^cu[A-Z][A-Za-z0-9_]*$")
# The CPython C-API, provided by the interpreter that imports a Python extension
# module (one that exports PyInit_<name>: vLLM's spinloop, fs_io_C, cumem_allocator).
_PYTHON_API_RE = re.compile(r"^_?Py[A-Za-z0-9_]+$")
_SHIM_DECL_RE = re.compile(r"AOTI_TORCH_EXPORT\b[^;{}()]*?\b((?:aoti_torch|torch)_\w+)\s*\(")
_SHIM_NAME_RE = re.compile(r"^(?:aoti_torch|torch)_\w+$")
SHIM_HEADER_GLOBS = ("torch/csrc/inductor/aoti_torch/c/*.h",
                     "torch/csrc/inductor/aoti_torch/generated/c_shim_*.h",
                     "torch/csrc/stable/c/*.h")


# Defined (not imported) by a library only when libstdc++ is linked into it statically.
CXX_RUNTIME_MARKERS = frozenset({"__gxx_personality_v0", "__cxa_throw", "_ZTISt9exception"})


def static_runtime_problem(elf: "ElfInfo") -> "Resolution | None":
    """An extension with its own copy of libstdc++ next to the libstdc++.so.6 that
    torch loads: two C++ runtimes in one process (measured on an H100 host whose g++
    had only libstdc++.a: the first exception an op threw was a segfault)."""
    if not elf.cxx_runtime:
        return None
    return Resolution(elf.cxx_runtime[0], None, None, None, problem="static-runtime",
                      expected="libstdc++.so.6",
                      detail=f"defines {', '.join(elf.cxx_runtime)}: libstdc++ is linked in statically")


class AbiError(ValueError):
    """Bad input to the check (not a violation); the message names the fix."""


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Undef:
    name: str
    version: str | None = None        # "GLIBCXX_3.4.21"
    version_file: str | None = None   # "libstdc++.so.6" (from .gnu.version_r)
    weak: bool = False


@dataclass(frozen=True)
class ElfInfo:
    path: str
    needed: tuple[str, ...]
    undefined: tuple[Undef, ...]
    cxx_runtime: tuple[str, ...] = ()   # C++ runtime symbols it defines (static libstdc++)
    python_module: bool = False         # exports PyInit_*: a CPython extension module


@dataclass(frozen=True)
class Provider:
    """A library that defines symbols: ``has(name) -> bool``."""
    name: str                          # soname, e.g. "libc10.so"
    kind: str                          # "torch" | "cuda" | "system"
    has: Callable[[str], bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Policy:
    name: str
    libs: frozenset[str]                       # lib_whitelist
    versions: dict[str, frozenset[str]]        # "GLIBC" -> {"2.2.5", ...}
    origin: str = field(default="auditwheel policy data", compare=False)

    def allows(self, version: str) -> bool:
        prefix, _, ver = version.partition("_")
        return ver in self.versions.get(prefix, frozenset())

    def covers(self, lib: str) -> bool:
        """A system library the policy lets a wheel depend on. The dynamic loader
        (ld-linux-*.so.2, e.g. __tls_get_addr@GLIBC_2.3 from a -fPIC static
        libstdc++) is part of glibc: auditwheel leaves it out of lib_whitelist
        but checks its GLIBC_ versions like libc's."""
        return lib in self.libs or lib.startswith("ld-linux")

    def newest(self, prefix: str) -> str:
        vs = sorted(self.versions.get(prefix, ()), key=_ver_key)
        return vs[-1] if vs else "none"


def _ver_key(v: str):
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._]", v)]


@dataclass
class Resolution:
    name: str
    version: str | None
    provider: str | None          # library that resolves it
    kind: str | None              # torch | cuda | driver | python | system | weak
    problem: str | None = None    # unresolved | version | stable-abi | missing-library | static-runtime
    detail: str = ""
    expected: str | None = None   # where it was expected (for problems)
    demangled: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class FileReport:
    path: str
    abi: str
    needed: list[str]
    resolutions: list[Resolution]

    @property
    def problems(self) -> list[Resolution]:
        return [r for r in self.resolutions if not r.ok]


# ---------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------
def is_mangled(name: str) -> bool:
    return name.startswith("_Z")


def parse_shim_names(header_texts: Iterable[str]) -> frozenset[str]:
    """extern "C" function names declared AOTI_TORCH_EXPORT in the shim headers."""
    names: set[str] = set()
    for text in header_texts:
        text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
        names.update(_SHIM_DECL_RE.findall(text))
    return frozenset(names)


def in_shim(name: str, shim: frozenset[str] | None) -> bool:
    """Whether an unmangled torch symbol belongs to the stable C shim; with no
    headers to parse (``shim`` None) the shim's naming pattern decides."""
    if is_mangled(name):
        return False
    return name in shim if shim is not None else bool(_SHIM_NAME_RE.match(name))


def expected_library(name: str, demangled: str, needed: Iterable[str]) -> str:
    """Best guess of the library a symbol should come from (for messages)."""
    d = demangled or name
    if d.startswith("c10::cuda::") or d.startswith("c10::cuda "):
        return "libc10_cuda.so"
    if d.startswith("c10::") or d.startswith("caffe2::"):
        return "libc10.so"
    if d.startswith(("at::cuda::", "at::native::cuda", "torch::cuda::")):
        return "libtorch_cuda.so"
    if d.startswith(("at::", "torch::", "aoti_torch_", "torch_")):
        return "libtorch_cpu.so"
    if name.startswith(("cuda", "__cuda")):
        return "libcudart.so.13"
    if _DRIVER_RE.match(name):
        return "libcuda.so.1"
    needed = list(needed)
    return "one of " + ", ".join(needed) if needed else "no NEEDED library"


def resolve_symbol(sym: Undef, providers: list[Provider], policy: Policy, abi: str,
                   shim: frozenset[str] | None, needed: tuple[str, ...] = (),
                   demangled: str = "", python_module: bool = False) -> Resolution:
    r = Resolution(sym.name, sym.version, None, None, demangled=demangled)
    # 1. a symbol version names its library: check it against the policy / provider
    if sym.version_file:
        if policy.covers(sym.version_file):
            if policy.allows(sym.version):
                r.provider, r.kind = sym.version_file, "system"
            else:
                prefix = sym.version.partition("_")[0]
                r.problem, r.expected = "version", sym.version_file
                r.detail = (f"needs {sym.version} from {sym.version_file}; {policy.name} allows "
                            f"{prefix} up to {policy.newest(prefix)} (build with an older "
                            f"toolchain, e.g. the manylinux_2_28 image's gcc-toolset)")
            return r
        for p in providers:
            if p.name == sym.version_file and p.has(sym.name):
                r.provider, r.kind = p.name, p.kind
                break
    # 2. by name: a non-torch definition wins (libc10 re-exports std:: template
    #    instances that libstdc++ also defines; those are not torch's ABI)
    if r.provider is None:
        hits = [p for p in providers if p.has(sym.name)]
        hit = next((p for p in hits if p.kind != "torch"), hits[0] if hits else None)
        if hit is not None:
            r.provider, r.kind = hit.name, hit.kind
    if r.provider is None and _DRIVER_RE.match(sym.name):
        if "libcuda.so.1" not in needed and not sym.weak:
            # torch loads the driver privately (RTLD_LOCAL): nothing else makes the
            # name visible, and the import fails with 'undefined symbol' on a GPU host
            r.problem, r.expected = "unresolved", "libcuda.so.1"
            r.detail = ("a driver API function, but libcuda.so.1 is not NEEDED: link the driver "
                        "(CUDA::cuda_driver) against a stub that defines it, as the toolkit's "
                        "lib/stubs/libcuda.so does (an empty stub is dropped by --as-needed)")
            return r
        r.provider, r.kind = "libcuda.so.1", "driver"
    if r.provider is None and python_module and _PYTHON_API_RE.match(sym.name):
        r.provider, r.kind = "python", "python"
    if r.provider is None:
        if sym.weak:
            r.kind = "weak"
            return r
        r.problem, r.detail = "unresolved", "no provider defines it"
        r.expected = sym.version_file or expected_library(sym.name, demangled, needed)
        return r
    if abi == "stable" and r.kind == "torch" and not in_shim(sym.name, shim):
        r.problem, r.expected = "stable-abi", r.provider
        if (demangled or "").startswith("std::"):
            r.detail = ("C++ standard library symbol bound to torch's copy, not libstdc++'s "
                        "(link libstdc++ before torch's libraries)")
        else:
            r.detail = ("classic ABI symbol" if is_mangled(sym.name)
                        else "torch symbol outside the stable C shim")
    return r


def resolve(elf: ElfInfo, providers: list[Provider], policy: Policy, abi: str,
            shim: frozenset[str] | None, demangled: dict[str, str] | None = None) -> list[Resolution]:
    """One Resolution per undefined symbol of ``elf``."""
    dm = demangled or {}
    return [resolve_symbol(s, providers, policy, abi, shim, elf.needed, dm.get(s.name, ""),
                           elf.python_module)
            for s in elf.undefined]


def missing_libraries(needed: Iterable[str], providers: list[Provider], policy: Policy) -> list[str]:
    """NEEDED libraries that neither torch, the CUDA wheels nor the policy's system
    set provide (libcuda.so.1 comes with the driver)."""
    have = {p.name for p in providers}
    return [n for n in needed
            if n not in have and n not in policy.libs and n != "libcuda.so.1"
            and not n.startswith("ld-linux")]


def describe_problem(r: Resolution, path: str) -> str:
    shown = r.demangled or r.name
    lib = Path(path).name
    if r.problem == "stable-abi":
        if is_mangled(r.name):
            return (f"{lib} uses classic ABI symbol {shown} from {r.expected}: the stable-ABI "
                    f"promise is broken (use the torch/csrc/stable API or the C shim)")
        return (f"{lib} uses torch symbol {shown} from {r.expected}, which is not declared in "
                f"torch's stable C shim: the stable-ABI promise is broken")
    if r.problem == "missing-library":
        return f"{lib}: needs {r.name}, which the checked torch/CUDA environment does not have ({r.detail})"
    if r.problem == "version":
        return f"{lib}: {shown}@{r.version} {r.detail}"
    if r.problem == "static-runtime":
        return (f"{lib} carries its own C++ runtime ({r.detail}); torch loads libstdc++.so.6, and "
                f"two C++ runtimes in one process crash on the first exception. Build with a g++ "
                f"that links libstdc++.so.6 (e.g. CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++)")
    return f"{lib}: undefined symbol {shown} (expected in {r.expected}): {r.detail}"


def summary(reports: list[FileReport]) -> dict:
    out = {}
    for rep in reports:
        counts: dict[str, int] = {}
        for r in rep.resolutions:
            key = r.provider or ("(weak, unresolved)" if r.kind == "weak" else
                                 "(missing library)" if r.problem == "missing-library" else
                                 "(unresolved)")
            counts[key] = counts.get(key, 0) + 1
        out[rep.path] = counts
    return out


def format_table(reports: list[FileReport], context: list[str], verbose: bool = False) -> str:
    lines = list(context)
    for rep in reports:
        lines.append("")
        lines.append(f"{rep.path}  [abi: {rep.abi}]  NEEDED: {', '.join(rep.needed) or '-'}")
        counts = summary([rep])[rep.path]
        lines.append("  resolved: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        rows = rep.resolutions if verbose else rep.problems
        if rows:
            w = max(len(r.problem or "ok") for r in rows)
            for r in sorted(rows, key=lambda r: (r.problem is None, r.problem or "", r.name)):
                where = r.provider or r.expected or "-"
                ver = f"@{r.version}" if r.version else ""
                lines.append(f"  {(r.problem or 'ok'):<{w}}  {r.demangled or r.name}{ver}  [{where}]"
                             + (f"  {r.detail}" if r.detail else ""))
        lines.append(f"  {'FAIL' if rep.problems else 'OK'}: {len(rep.resolutions)} undefined "
                     f"symbols, {len(rep.problems)} problem(s)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Effects: ELF reading (pyelftools), library discovery, demangling
# ---------------------------------------------------------------------------
def read_elf(stream, path: str) -> ElfInfo:
    """Undefined dynamic symbols (with their version requirement) and DT_NEEDED."""
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.dynamic import DynamicSection
        from elftools.elf.elffile import ELFFile
        from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
    except ImportError:
        raise AbiError("pyelftools is not installed (it reads the ELF symbol tables every check "
                       "needs); pip install pyelftools") from None
    try:
        elf = ELFFile(stream)
    except ELFError as e:
        raise AbiError(f"{path}: not an ELF shared library ({e})") from None
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None:
        raise AbiError(f"{path}: has no dynamic symbol table (is it a shared library?)")
    needed: list[str] = []
    for sec in elf.iter_sections():
        if isinstance(sec, DynamicSection):
            needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
    verneed = next((s for s in elf.iter_sections() if isinstance(s, GNUVerNeedSection)), None)
    vermap: dict[int, tuple[str, str]] = {}
    if verneed is not None:
        for vn, auxes in verneed.iter_versions():
            for aux in auxes:
                vermap[aux["vna_other"]] = (aux.name, vn.name)
    undefined: list[Undef] = []
    runtime: list[str] = []
    python_module = False
    for i, s in enumerate(dynsym.iter_symbols()):
        if i == 0 or not s.name:
            continue
        if s["st_shndx"] != "SHN_UNDEF":
            if s.name in CXX_RUNTIME_MARKERS:
                runtime.append(s.name)
            python_module = python_module or s.name.startswith("PyInit_")
            continue
        version = version_file = None
        if versym is not None:
            ndx = versym.get_symbol(i)["ndx"]
            if isinstance(ndx, int) and ndx in vermap:
                version, version_file = vermap[ndx]
        undefined.append(Undef(s.name, version, version_file, s["st_info"]["bind"] == "STB_WEAK"))
    return ElfInfo(path, tuple(needed), tuple(undefined), tuple(sorted(runtime)), python_module)


class ElfLibrary:
    """Exported-symbol lookup of a library through its hash table (pyelftools):
    a few hundred lookups instead of reading 100k+ symbols of libtorch_cpu."""

    def __init__(self, path: Path) -> None:
        from elftools.elf.elffile import ELFFile
        from elftools.elf.hash import ELFHashSection, GNUHashSection
        self.path = Path(path)
        self._f = open(self.path, "rb")
        self._elf = ELFFile(self._f)
        self._hash = next((s for s in self._elf.iter_sections()
                           if isinstance(s, (GNUHashSection, ELFHashSection))), None)
        self._names: set[str] | None = None

    def has(self, name: str) -> bool:
        if self._hash is not None:
            sym = self._hash.get_symbol(name)
            return sym is not None and sym["st_shndx"] != "SHN_UNDEF"
        if self._names is None:
            dynsym = self._elf.get_section_by_name(".dynsym")
            self._names = {s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF"}
        return name in self._names


def find_torch_dir(torch_dir: Path | None) -> Path:
    """The torch package directory (holding lib/), from --torch-dir or the import system."""
    if torch_dir is not None:
        d = Path(torch_dir)
        if (d / "lib").is_dir():
            return d
        if d.name == "lib" and d.is_dir():
            return d.parent
        raise AbiError(f"--torch-dir {d}: no torch/lib there; pass the torch package "
                       f"directory or its lib/ directory")
    import importlib.util
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise AbiError("torch is not installed here; install the locked torch "
                       "(see torch-lock.toml) or pass --torch-dir DIR")
    return Path(list(spec.submodule_search_locations)[0])


def nvidia_lib_dirs(torch_dir: Path) -> list[Path]:
    site = torch_dir.parent
    return sorted(p for p in (site / "nvidia").glob("*/lib") if p.is_dir())


def system_lib_dirs() -> list[Path]:
    dirs = [Path(p) for p in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                              "/lib64", "/usr/lib64", "/lib", "/usr/lib")]
    return [d for d in dirs if d.is_dir()]


def discover_providers(torch_dir: Path, needed: Iterable[str], policy: Policy) -> list[Provider]:
    libdir = torch_dir / "lib"
    providers: list[Provider] = []
    for p in sorted(libdir.glob("*.so")):
        if p.name.startswith(("libtorch", "libc10")):
            providers.append(Provider(p.name, "torch", ElfLibrary(p).has))
    nv_dirs = nvidia_lib_dirs(torch_dir)
    wanted = ["libcudart.so.13"] + [n for n in needed if n not in {x.name for x in providers}]
    for name in dict.fromkeys(wanted):
        if name in policy.libs:
            continue
        for d in [libdir, *nv_dirs]:
            if (d / name).is_file():
                providers.append(Provider(name, "cuda" if d != libdir else "torch",
                                          ElfLibrary(d / name).has))
                break
    # system libraries the policy allows, for unversioned references
    for name in needed:
        if policy.covers(name):
            for d in system_lib_dirs():
                if (d / name).is_file():
                    providers.append(Provider(name, "system", ElfLibrary(d / name).has))
                    break
    return providers


# The manylinux policy data (allowed libraries and symbol versions) that the check
# needs, vendored from auditwheel's manylinux-policy.json so that abi-check also runs
# where auditwheel is not installed (a GPU host with torch only). Derived by
# ``vendored_policy_subset``; tests/unit/test_abi.py checks it against the
# installed auditwheel. Regenerate with: python -m blackwheel_factory.checks.abi --write-policies
VENDORED_POLICY = Path(__file__).resolve().parents[1] / "policies" / "manylinux-policy.json"
VENDORED_ARCHS = ("x86_64", "aarch64")


def vendored_policy_subset(data: list[dict], archs=VENDORED_ARCHS) -> dict:
    """auditwheel's policy list -> the subset this check reads (manylinux_2_17 and
    newer, ``archs`` only). Pure."""
    out = []
    for pol in data:
        name = pol["name"]
        if not name.startswith("manylinux_2_") or int(name.rsplit("_", 1)[1]) < 17:
            continue
        out.append({"name": name, "aliases": list(pol.get("aliases", [])),
                    "lib_whitelist": sorted(pol["lib_whitelist"]),
                    "symbol_versions": {a: {k: sorted(v) for k, v in sorted(pol["symbol_versions"][a].items())}
                                        for a in archs if a in pol["symbol_versions"]}})
    return {"source": "auditwheel manylinux-policy.json (subset: manylinux_2_17+, "
                      + ", ".join(archs) + ")", "policies": out}


def _auditwheel_policy_data() -> tuple[list[dict] | None, str]:
    try:
        import auditwheel.policy as ap
    except ImportError:
        return None, "auditwheel is not installed"
    path = Path(ap.__file__).with_name("manylinux-policy.json")
    return json.loads(path.read_text()), f"auditwheel policy data ({path.name})"


def policy_data() -> tuple[list[dict], str]:
    """(policies, origin): auditwheel's own data when it is installed, else the subset
    vendored with this package."""
    data, origin = _auditwheel_policy_data()
    if data is not None:
        return data, origin
    try:
        vendored = json.loads(VENDORED_POLICY.read_text())
    except (OSError, ValueError) as e:
        raise AbiError(f"{origin}, and the vendored policy data {VENDORED_POLICY} is unreadable ({e}); "
                       f"pip install 'auditwheel>=6' (it is in the [tools] extra)") from None
    return vendored["policies"], f"vendored policy data, {origin}"


def load_policy(name: str = DEFAULT_POLICY, arch: str = "x86_64") -> Policy:
    """Allowed libraries and symbol versions from auditwheel's policy JSON (or the
    vendored subset where auditwheel is not installed)."""
    data, origin = policy_data()
    for pol in data:
        if name == pol["name"] or name in pol.get("aliases", []):
            versions = pol["symbol_versions"].get(arch)
            if versions is None:
                raise AbiError(f"policy {name} has no symbol versions for {arch} ({origin})")
            return Policy(pol["name"], frozenset(pol["lib_whitelist"]),
                          {k: frozenset(v) for k, v in versions.items()}, origin)
    raise AbiError(f"unknown policy {name!r} in the {origin}; use e.g. {DEFAULT_POLICY}")


def write_vendored_policies(path: Path = VENDORED_POLICY) -> Path:
    data, origin = _auditwheel_policy_data()
    if data is None:
        raise AbiError(f"{origin}: cannot derive the vendored policy data")
    sub = vendored_policy_subset(data)
    lines = ",\n".join(json.dumps(p, sort_keys=True) for p in sub["policies"])
    path.write_text('{"source": ' + json.dumps(sub["source"]) + ',\n"policies": [\n' + lines + "\n]}\n")
    return path


def load_shim(torch_dir: Path) -> tuple[frozenset[str] | None, str]:
    """(names, origin): shim function names parsed from torch's headers."""
    inc = torch_dir / "include"
    files = sorted({p for g in SHIM_HEADER_GLOBS for p in inc.glob(g)})
    if not files:
        return None, "pattern aoti_torch_*/torch_* (no shim headers under torch/include)"
    names = parse_shim_names(p.read_text(errors="replace") for p in files)
    return names, f"{len(names)} functions declared AOTI_TORCH_EXPORT in {len(files)} shim headers"


def demangle(names: list[str]) -> dict[str, str]:
    mangled = [n for n in names if is_mangled(n)]
    if not mangled:
        return {}
    try:
        out = subprocess.run(["c++filt"], input="\n".join(mangled) + "\n", capture_output=True,
                             text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {}   # names stay mangled; still correct, less readable
    return dict(zip(mangled, out))


def iter_inputs(target: Path, abi: str) -> list[tuple[str, bytes, str]]:
    """(display path, ELF bytes, abi) for a .so or every extension in a wheel."""
    if not target.exists():
        raise AbiError(f"{target}: no such file")
    if target.suffix == ".whl" or zipfile.is_zipfile(target):
        with zipfile.ZipFile(target) as zf:
            names = zf.namelist()
            kinds: dict[str, str] = {}
            info_name = next((n for n in names if n.endswith("/_build_info.json")), None)
            if info_name:
                info = json.loads(zf.read(info_name))
                kinds = {lib: k.get("abi", "classic")
                         for k in info.get("kernels", {}).values() if isinstance(k, dict)
                         for lib in (k.get("libraries") or [k.get("library")])}
            sos = [n for n in names if re.search(r"\.so(\.\d+)*$", n)]
            if not sos:
                raise AbiError(f"{target}: the wheel holds no shared library")
            return [(f"{target.name}:{n}", zf.read(n),
                     abi if abi != "auto" else kinds.get(Path(n).name, "classic")) for n in sos]
    kind = abi
    if abi == "auto":
        info = target.with_name("_build_info.json")
        kind = "classic"
        if info.is_file():
            data = json.loads(info.read_text())
            kind = next((k.get("abi", "classic") for k in data.get("kernels", {}).values()
                         if isinstance(k, dict)
                         and target.name in (k.get("libraries") or [k.get("library")])), "classic")
    return [(str(target), target.read_bytes(), kind)]


def check(target: Path, torch_dir: Path | None = None, abi: str = "auto",
          policy_name: str = DEFAULT_POLICY) -> tuple[list[FileReport], list[str]]:
    """Run the check; returns the reports and context lines (what was checked against)."""
    from blackwheel_factory.inputs.lock import facts_from_torch_dir
    tdir = find_torch_dir(torch_dir)
    policy = load_policy(policy_name)
    shim, shim_origin = load_shim(tdir)
    facts = facts_from_torch_dir(tdir)
    context = [f"torch: {facts.describe() if facts else tdir}",
               f"policy: {policy.name} ({policy.origin})",
               f"stable C shim: {shim_origin}"]
    try:
        from blackwheel_factory.inputs.config import load_lock
        lock = load_lock()
        if facts and facts.version != lock.version:
            context.append(f"warning: checking against torch {facts.version}, "
                           f"but torch-lock.toml locks {lock.version}")
    except Exception:  # outside a checkout there is no lock to compare with
        pass
    reports: list[FileReport] = []
    cache: dict[tuple[str, ...], list[Provider]] = {}
    for path, data, kind in iter_inputs(Path(target), abi):
        elf = read_elf(io.BytesIO(data), path)
        if elf.needed not in cache:
            cache[elf.needed] = discover_providers(tdir, elf.needed, policy)
        res = resolve(elf, cache[elf.needed], policy, kind, shim,
                      demangle([u.name for u in elf.undefined]))
        res += [Resolution(n, None, None, None, problem="missing-library", expected=n,
                           detail=f"not in {tdir / 'lib'} nor its nvidia/*/lib; a load fails with "
                                  f"'cannot open shared object file'")
                for n in missing_libraries(elf.needed, cache[elf.needed], policy)]
        if (static := static_runtime_problem(elf)) is not None:
            res.append(static)
        reports.append(FileReport(path, kind, list(elf.needed), res))
    return reports, context


def to_json(reports: list[FileReport], context: list[str]) -> dict:
    return {
        "ok": not any(r.problems for r in reports),
        "context": context,
        "files": [{"path": r.path, "abi": r.abi, "needed": r.needed,
                   "problems": [asdict(p) for p in r.problems],
                   "resolved": summary([r])[r.path],
                   "symbols": [asdict(s) for s in r.resolutions]} for r in reports],
    }


def add_arguments(p) -> None:
    p.add_argument("target", type=Path, help="a wheel or an extension .so")
    p.add_argument("--torch-dir", type=Path, default=None,
                   help="torch package dir (or its lib/) to resolve against (default: the importable torch)")
    p.add_argument("--abi", choices=("auto", "stable", "classic"), default="auto",
                   help="ABI promise to enforce (auto: from _build_info.json, else classic)")
    p.add_argument("--policy", default=DEFAULT_POLICY, help="auditwheel policy for system symbol versions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="list every symbol, not only problems")


def run(args) -> int:
    try:
        reports, context = check(args.target, args.torch_dir, args.abi, args.policy)
    except AbiError as e:
        print(f"abi-check: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(reports, context), indent=2))
    else:
        print(format_table(reports, context, args.verbose))
    problems = [(rep.path, r) for rep in reports for r in rep.problems]
    for path, r in problems:
        print(describe_problem(r, path), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    if sys.argv[1:] == ["--write-policies"]:
        print(f"wrote {write_vendored_policies()}")
        raise SystemExit(0)
    raise SystemExit("usage: python -m blackwheel_factory.checks.abi --write-policies "
                     "(the check itself: python -m blackwheel_factory abi-check)")
