"""The base image, built for real with buildah (daemonless, chroot isolation, root), from the
kernel-pack and reduced flash_attn wheels of this test session (conftest.py), published to a
pypiserver on 127.0.0.1 with a password, next to the locked torch 2.14.1 and every one of its
dependencies (about 2.9 GB of wheels, mirrored by `pip download` as a private index mirrors them).

One module fixture does the work, in parallel where the machine allows (2 cores):
  1. `image base-os`: mmdebstrap bookworm (python3, venv, pip) under SOURCE_DATE_EPOCH, imported
     into store A; the same tar into store B (two stores: two builds from scratch)
  2. the wheels repaired and published (`publish`: verify, twine, read back), torch mirrored
  3. `image build` twice, one per store, each writing the lock (`constraints`) itself: one
     after the other (disk: a commit holds four copies of the 5.7 GB layer at its peak)
  4. at once: store A: the application image FROM the base (ci/image-app), run with
     `buildah run`; store B: a build against a tampered wheel on the index, then one whose
     lock pins torch 2.13.0+cpu (the guard must stop it); store A's image exported as
     stored and every blob scanned for the index password
The tests then check what each step left. Each build has its own pypiserver (its wsgiref
server answers one request at a time).
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
from publish_helpers import PyPIServer  # noqa: E402

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "image-reader", "Img-1dx-S3cret-pa55"
TAG = "localhost/blackwheel-base:test"
APP = "localhost/blackwheel-app:test"
PY, GLIBC = "3.11", (2, 36)          # Debian bookworm: the lock's target
OTHER_TORCH = "2.13.0"               # /opt/wheels/torch-2.13.0+cpu-...: not the locked torch
DISK_NEEDED = 36_000_000_000         # the fixture's measured peak, 32.4 GB, + 10 % (DiskPeak; IMAGES.md 8)

for tool in ("buildah", "mmdebstrap"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install buildah mmdebstrap; .ci/run does)",
                    allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("buildah (chroot isolation) and mmdebstrap --mode=root need root", allow_module_level=True)
pytest.importorskip("pypiserver", reason="pip install pypiserver passlib (ci test requirements)")


def factory(*args, env=None, log: Path | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_CONSTRAINT", "TWINE_"))}
    e["PYTHONPATH"] = str(REPO / "python")
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "blackwheel_factory", *args], capture_output=True,
                       text=True, env=e, cwd=REPO, stdin=subprocess.DEVNULL)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ blackwheel_factory {' '.join(args)}\n{r.stdout}{r.stderr}\n")
    return r


def buildah(store: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(store / "storage.conf"), BUILDAH_ISOLATION="chroot")
    return subprocess.run(["buildah", *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def pip_download(dest: Path, *reqs: str) -> None:
    """What an index mirror does: the wheels for the image's python and glibc, with deps."""
    sys.path.insert(0, str(REPO / "python"))
    from blackwheel_factory.image.plan import platform_tags
    plats = [a for p in platform_tags(GLIBC) for a in ("--platform", p)]
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", PY, *plats, "-d", str(dest), *reqs],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _timed(times: dict, key: str, fn, *a, **k):
    t = time.monotonic()
    try:
        return fn(*a, **k)
    finally:
        times[key] = round(time.monotonic() - t, 1)


def _build(store: Path, tag: str, index: str, log: Path, *extra: str) -> subprocess.CompletedProcess:
    return factory("image", "build", "--storage", str(store), "--base", "localhost/blackwheel-os:bookworm",
                   "--tag", tag, "--log", str(log), *extra, env={"BLACKWHEEL_INDEX_URL": index}, log=log)


@pytest.fixture(scope="module")
def built_wheels(request) -> list[Path]:
    """This session's kernel pack and reduced flash_attn (conftest.py). For iterating on this
    file alone, BLACKWHEEL_IMAGE_TEST_WHEELS=DIR takes both from an earlier build instead
    (CI does not set it)."""
    d = os.environ.get("BLACKWHEEL_IMAGE_TEST_WHEELS")
    if d:
        found = [sorted(Path(d).glob(f"{n}-*.whl")) for n in ("blackwheel", "flash_attn")]
        assert all(len(f) == 1 for f in found), found
        return [f[0] for f in found]
    return [request.getfixturevalue("two_builds")[0], request.getfixturevalue("fa_wheel")]


class DiskPeak:
    """The most disk this fixture took at once: free space sampled every second in a thread
    (the lowest seen, against the free space at the start)."""

    def __init__(self, path: Path):
        self.path, self.start, self.t0 = path, shutil.disk_usage(path).free, time.monotonic()
        self.low, self.low_at, self._stop = self.start, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            free = shutil.disk_usage(self.path).free
            if free < self.low:
                self.low, self.low_at = free, round(time.monotonic() - self.t0)

    def mark(self, times: dict, name: str) -> None:
        times[f"disk_{name}_gb"] = round((self.start - shutil.disk_usage(self.path).free) / 1e9, 1)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"disk_peak_gb": round((self.start - self.low) / 1e9, 1), "disk_peak_at_s": self.low_at}


@pytest.fixture(scope="module")
def images(tmp_path_factory, built_wheels):
    root = tmp_path_factory.mktemp("image")
    free = shutil.disk_usage(root).free
    if free < DISK_NEEDED:
        pytest.skip(f"the image test needs {DISK_NEEDED / 1e9:.0f} GB free under {root} (measured peak "
                    f"plus margin: docs/IMAGES.md); {free / 1e9:.1f} GB are: free space or set "
                    f"PYTEST_ADDOPTS=--basetemp=DIR on a larger disk")
    times: dict[str, float] = {}
    out: dict = {"root": root, "times": times}
    disk = DiskPeak(root)
    stores = {k: root / f"store-{k}" for k in "ab"}
    # one index per build: pypiserver's wsgiref server answers one request at a time, and a
    # 550 MB torch download to one pip must not time the other pip out
    servers = {k: PyPIServer(root / f"server-{k}", users={USER: PASSWORD}) for k in "ab"}
    pool = ThreadPoolExecutor(max_workers=4)
    t_all = time.monotonic()
    try:
        # 1 | 2: the base OS (network: Debian mirror) while the index is filled
        base = pool.submit(_timed, times, "base_os", factory, "image", "base-os", "--tar", str(root / "base.tar"),
                           "--storage", str(stores["a"]), "--log", str(root / "base-os.log"))
        dist = root / "dist"
        for w in built_wheels:
            r = factory("repair", str(w), "-w", str(dist))
            assert r.returncode == 0, r.stdout + r.stderr
        wheels = sorted(dist.glob("*.whl"))
        assert [w.name.split("-")[0] for w in wheels] == ["blackwheel", "flash_attn"], wheels
        for s in servers.values():
            s.start()
        index = {k: s.url_with(USER, PASSWORD) + "simple/" for k, s in servers.items()}
        r = factory("publish", *map(str, wheels), "--repository-url", servers["a"].url,
                    env={"TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD})
        assert r.returncode == 0, r.stdout + r.stderr
        from blackwheel_factory.inputs.config import load_lock
        lock = load_lock(REPO / "torch-lock.toml")
        mirror = root / "mirror"
        _timed(times, "mirror", pip_download, mirror, *map(str, wheels), f"torch=={lock.public_version}")
        pkgs = servers["a"].root / "packages"
        for f in mirror.iterdir():
            if not (pkgs / f.name).exists():
                os.link(f, pkgs / f.name)
        pkgs_b = servers["b"].root / "packages"
        for f in pkgs.iterdir():
            os.link(f, pkgs_b / f.name)
        out["index_files"] = sorted(p.name for p in pkgs.iterdir())
        out["index_bytes"] = sum(p.stat().st_size for p in pkgs.iterdir())
        r = base.result()
        assert r.returncode == 0, r.stdout + r.stderr
        out["base_os"] = r.stdout
        r = factory("image", "base-os", "--tar", str(root / "base.tar"), "--reuse-tar",
                    "--storage", str(stores["b"]))
        assert r.returncode == 0, r.stdout + r.stderr
        out["base_os_b"] = r.stdout
        disk.mark(times, "before_builds")

        # 3: the same inputs, two stores, one after the other: a build's commit holds its
        # container, two temporary copies of the layer under /var/tmp and the new layer
        # (4 x 5.7 GB) at its peak; two at once filled a CI machine's disk
        args = ["--wheel", *map(str, wheels), "--resolve-from", str(pkgs)]
        t = time.monotonic()
        out["build"] = {}
        for k in "ab":
            out["build"][k] = r = _timed(times, f"build_{k}", _build, stores[k], TAG, index[k],
                                         root / f"build-{k}.log", *args, "--lock-out", str(root / f"lock-{k}.txt"),
                                         "--record", str(root / f"record-{k}.json"))
            assert r.returncode == 0, f"build {k}:\n{r.stdout}{r.stderr}"
            disk.mark(times, f"after_build_{k}")
        times["two_builds"] = round(time.monotonic() - t, 1)
        out["record"] = {k: json.loads((root / f"record-{k}.json").read_text()) for k in "ab"}
        if out["record"]["a"]["digest"] != out["record"]["b"]["digest"]:
            for k in "ab":
                buildah(stores[k], "push", "-q", "--disable-compression", TAG, f"dir:{root / ('export-' + k)}")
            out["compare"] = factory("image", "compare", str(root / "export-a"), str(root / "export-b"))
        else:
            buildah(stores["b"], "rmi", TAG)         # B's copy has served; its 5.7 GB go before step 4
        disk.mark(times, "before_step4")

        # 4: A: the application image; B: the two builds that must fail
        def app():
            r = buildah(stores["a"], "bud", "--isolation", "chroot", "--layers=false", "--pull=false",
                        "--timestamp", "0", "--build-arg", f"BASE_IMAGE={TAG}", "-t", APP,
                        "-f", str(REPO / "ci/image-app/Containerfile"), str(REPO / "ci/image-app"))
            assert r.returncode == 0, r.stdout + r.stderr
            out["app_build"] = r.stdout + r.stderr
            out["app_inspect"] = json.loads(buildah(stores["a"], "inspect", "--type", "image", APP).stdout)
            c = buildah(stores["a"], "from", "--pull=false", APP).stdout.strip().splitlines()[-1]
            out["app_run"] = buildah(stores["a"], "run", c, "--", "python", "/app/app.py")
            out["doctor"] = buildah(stores["a"], "run", c, "--", "python", "-m", "blackwheel", "doctor")
            buildah(stores["a"], "rm", c)

        def failing():
            fa = next(pkgs_b.glob("flash_attn-*.whl"))
            good = fa.read_bytes()
            fa.unlink()                          # the published file, replaced on the index
            fa.write_bytes(good + b"\0tampered")
            try:
                out["tampered"] = _build(stores["b"], "localhost/blackwheel-base:tampered", index["b"],
                                         root / "tampered.log", "--requirements", str(root / "lock-a.txt"))
            finally:
                fa.unlink()
                fa.write_bytes(good)
            out["wrong_lock"] = wrong_torch_lock(root, wheels, pkgs_b)
            if isinstance(out["wrong_lock"], str):
                out["wrong"] = None
                return
            out["wrong"] = _build(stores["b"], "localhost/blackwheel-base:wrong", index["b"], root / "wrong.log",
                                  "--requirements", str(out["wrong_lock"]))
            out["wrong_images"] = buildah(stores["b"], "images", "--format", "{{.Name}}:{{.Tag}}").stdout

        # 5 (at the same time): every blob of the image as stored, and the history, for the password
        def scan():
            out["history"] = buildah(stores["a"], "inspect", "--type", "image", TAG).stdout
            if not (root / "export-a").exists():
                r = _timed(times, "export", buildah, stores["a"], "push", "-q", "--disable-compression",
                           TAG, f"dir:{root / 'export-a'}")
                assert r.returncode == 0, r.stdout + r.stderr
            out["scan"] = _timed(times, "scan", factory, "image", "scan", str(root / "export-a"),
                                 "--secret-env", "BW_TEST_INDEX_PASSWORD", "--user", USER,
                                 env={"BW_TEST_INDEX_PASSWORD": PASSWORD})

        t = time.monotonic()
        jobs = {name: pool.submit(_timed, times, name, fn) for name, fn in
                (("app", app), ("failing_builds", failing), ("export_and_scan", scan))}
        for j in jobs.values():
            j.result()
        times["app_failing_scan"] = round(time.monotonic() - t, 1)
        out["logs"] = "".join(p.read_text() for p in sorted(root.glob("*.log")))
        times["total"] = round(time.monotonic() - t_all, 1)
        times.update(disk.stop())
        print("\nimage test times (s):", json.dumps(times), file=sys.stderr)
        print("records:", json.dumps(out["record"], indent=1), file=sys.stderr)
        (root / "times.json").write_text(json.dumps(times, indent=1))
        yield out
    finally:
        disk.stop()
        pool.shutdown(wait=True)
        for s in servers.values():
            s.stop()
        sys.path.insert(0, str(REPO / "python"))
        from blackwheel_factory.image.buildah import Store
        for s in stores.values():
            if s.exists():
                Store(s, "auto").destroy()
        for d in [*root.glob("export-*"), root / "mirror", *root.glob("server-*/packages"), root / "other-torch"]:
            shutil.rmtree(d, ignore_errors=True)          # GBs; pytest keeps three sessions' tmp
        (root / "base.tar").unlink(missing_ok=True)


def wrong_torch_lock(root: Path, wheels: list[Path], pkgs: Path) -> Path | str:
    """A lock that pins torch 2.13.0+cpu with its real sha256 (plus our wheels and the deps),
    as a stale or hand-edited lock would: resolved by pip like `constraints` does, without
    the check against torch-lock.toml that `constraints` makes (the image's guard must catch it)."""
    other = root / "other-torch"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(other), f"torch=={OTHER_TORCH}"], capture_output=True, text=True)
    files = list(other.glob("torch-*.whl"))
    if r.returncode != 0 or not files or "+cpu" not in files[0].name:
        return (f"torch=={OTHER_TORCH}+cpu is not reachable here (the wrong-torch build needs it): "
                f"{[f.name for f in files]} {r.stderr[-400:]}")
    os.link(files[0], pkgs / files[0].name)
    from blackwheel_factory.image.plan import platform_tags
    from blackwheel_factory.publishing import constraints as C
    target = ["--python-version", PY, *[a for p in platform_tags(GLIBC) for a in ("--platform", p)]]
    report = C.pip_report(wheels, f"torch=={OTHER_TORCH}", ["--no-index", "--find-links", str(pkgs)], target)
    pins = C.pins_from_report(report, {w.name: C.sha256_file(w) for w in wheels})
    assert any(p.name == "torch" and "+cpu" in p.filename for p in pins), pins
    path = root / "lock-wrong-torch.txt"
    path.write_text(C.render(pins, ["a lock for another torch (test)"]))
    return path


def test_two_builds_from_scratch_give_the_same_digest(images):
    a, b = images["record"]["a"], images["record"]["b"]
    assert a["storage_driver"] == b["storage_driver"]
    assert (images["root"] / "lock-a.txt").read_text() == (images["root"] / "lock-b.txt").read_text()
    explain = images.get("compare")
    assert a["digest"] == b["digest"], explain.stdout if explain else ""
    assert a["layers"] == b["layers"] and len(a["layers"]) == 2       # the OS, then ours
    assert a["layers"][1]["size"] > 3_000_000_000                       # torch and its CUDA wheels are in it
    lock = (images["root"] / "lock-a.txt").read_text()
    for pin in ("torch==2.14.1", "nvidia-cudnn-cu13==", "triton==", "blackwheel==0.1.0+cu130.sm120a",
                "flash-attn==2.8.3.post2+cu130.sm120a", "einops=="):
        assert pin in lock, pin
    assert "--hash=sha256:" in lock and PASSWORD not in lock


def test_the_build_installed_from_the_index_with_hashes_and_ran_guard_and_doctor(images):
    log = images["build"]["a"].stdout + (images["root"] / "build-a.log").read_text()
    assert "--require-hashes --only-binary=:all:" in log
    assert "Looking in indexes: http://****@127.0.0.1:" in log
    assert "import guard ok: blackwheel, flash_attn on torch 2.14.1+cu130" in log
    assert "[  ok] torch: torch 2.14.1+cu130" in log
    assert "GPU: none visible" in log


def test_the_app_image_builds_from_the_base_without_reinstalling_and_runs(images):
    log = images["app_build"]
    assert "Collecting" not in log and "Downloading" not in log and "pip" not in log
    layers = json.loads(images["app_inspect"]["Manifest"])["layers"]
    base = images["record"]["a"]["layers"]
    assert [l["digest"] for l in layers[:2]] == [l["digest"] for l in base]     # the base, as is
    assert len(layers) == 3 and layers[2]["size"] < 100_000                     # + app.py only
    r = images["app_run"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "app: blackwheel 0.1.0" in r.stdout and "flash_attn 2.8.3.post2" in r.stdout
    assert "torch 2.14.1+cu130" in r.stdout and "cuda available: False" in r.stdout
    d = images["doctor"]
    assert d.returncode == 0, d.stdout + d.stderr
    assert "[  ok] torch: torch 2.14.1+cu130" in d.stdout
    assert "GPU: none visible" in d.stdout and "no NVIDIA driver found" in d.stdout


def test_a_tampered_wheel_on_the_index_fails_on_the_hash(images):
    r = images["tampered"]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DO NOT MATCH THE HASHES" in r.stderr and "flash-attn" in r.stderr.lower()
    assert "tampered file" in r.stderr            # the diagnosis names the cause
    assert "blackwheel-base:tampered" not in images["wrong_images"]


def test_a_lock_with_another_torch_fails_on_the_guard(images):
    if images["wrong"] is None:
        pytest.skip(images["wrong_lock"])
    r = images["wrong"]
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "pins torch==2.13.0+cpu, torch-lock.toml locks 2.14.1+cu130" in out     # warned up front
    # the guard itself (the runtime's text: "<dist> <version> was built for <torch>, but ...")
    assert re.search(r"blackwheel \S+ was built for torch", out) and "2.13.0+cpu" in out
    assert "blackwheel-base:wrong" not in images["wrong_images"]


def test_the_password_is_in_no_layer_and_no_history_entry(images):
    assert PASSWORD not in images["history"]
    hist = json.loads(images["history"])["OCIv1"]["history"]
    assert any("secret" in h.get("created_by", "") for h in hist)       # the RUN that used it is there
    r = images["scan"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clean: 4 blobs" in r.stdout and "2 layers" in r.stdout
    read = int(r.stdout.split(" bytes read")[0].rsplit(" ", 1)[1])
    assert read >= images["record"]["a"]["size"]                          # every layer byte
    assert PASSWORD not in images["logs"]
