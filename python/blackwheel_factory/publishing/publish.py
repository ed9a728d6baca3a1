"""`python -m blackwheel_factory publish WHEEL... --repository-url URL`: verify, upload, read back.

For each file:
  1. verify it (blackwheel_factory.checks.verify.verify_wheel) unless --skip-verify;
  2. read the project's page on the index (PEP 691 JSON or PEP 503 HTML) and decide
     (simple_index.decide): not there -> upload; same sha256 -> no-op; other sha256 -> refuse;
  3. upload with twine (subprocess; credentials only through its environment);
  4. read the page again, download the file back and compare sha256.

Credentials: TWINE_USERNAME / TWINE_PASSWORD, else user:password in the URL, else keyring
(the service is the repository URL, as for twine). They are never printed: every line from
twine or from an HTTP error goes through Scrubber first.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

from blackwheel_factory.publishing import simple_index as si
from blackwheel_factory.publishing.index import sha256_file


class PublishError(RuntimeError):
    """A publish step failed; the message names the fix and holds no secret."""


# --------------------------------------------------------------------------- credentials

@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None

    def header(self) -> dict:
        if not self.username and not self.password:
            return {}
        token = base64.b64encode(f"{self.username or ''}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(url without user:password@, user, password)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, pw = userinfo.partition(":")
    from urllib.parse import unquote
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(pw) or None


def resolve_credentials(repository_url: str, environ=os.environ) -> tuple[str, Credentials]:
    clean, url_user, url_pw = split_userinfo(repository_url)
    user = environ.get("TWINE_USERNAME") or url_user
    pw = environ.get("TWINE_PASSWORD") or url_pw
    if not pw:
        try:
            import keyring  # twine's own fallback; optional
            cred = keyring.get_credential(clean, user)
            if cred is not None:
                user, pw = user or cred.username, cred.password
        except Exception:  # no keyring or no backend: anonymous
            pass
    return clean, Credentials(user, pw)


class Scrubber:
    """Removes passwords, Basic tokens and URL userinfo from text meant for a terminal or a log."""

    _USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")

    def __init__(self, *secrets: str | None, creds: Credentials | None = None):
        found = [s for s in secrets if s]
        if creds is not None:
            if creds.password:
                found.append(creds.password)
            token = creds.header().get("Authorization", "").removeprefix("Basic ")
            if token:
                found.append(token)
        from urllib.parse import quote
        # the secrets as typed, URL-quoted, longest first (a secret may contain another)
        self.secrets = sorted({v for s in found for v in (s, quote(s, safe=""))}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "****")
        text = self._USERINFO.sub(lambda m: m.group("scheme") + "****@", text)
        return re.sub(r"(?i)(authorization:\s*basic\s+)\S+", r"\1****", text)


# --------------------------------------------------------------------------- HTTP

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _origin(url: str) -> tuple[str, str]:
    p = urlsplit(url)
    return p.scheme, p.netloc


def _open(url: str, creds: Credentials, auth_origin: tuple[str, str], accept: str | None = None,
          timeout: float = 60.0):
    """GET, following same-origin redirects with credentials and cross-origin ones without.

    Returns the response, or None for 404 and for a redirect that leaves the index's origin
    on a project page (pypiserver's fallback to pypi.org: "not on this index")."""
    for _ in range(6):
        headers = {"User-Agent": "blackwheel-publish"}
        if accept:
            headers["Accept"] = accept
        if _origin(url) == auth_origin:
            headers.update(creds.header())
        req = urllib.request.Request(url, headers=headers)
        try:
            return _OPENER.open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code in (301, 302, 303, 307, 308) and e.headers.get("Location"):
                url = urljoin(url, e.headers["Location"])
                if accept and _origin(url) != auth_origin:
                    return None
                continue
            if e.code == 404:
                return None
            if e.code in (401, 403):
                raise PublishError(
                    f"the index refused the credentials (HTTP {e.code}) for {_redact(url)}; set "
                    "TWINE_USERNAME/TWINE_PASSWORD (or keyring) to an account that may read and upload")
            raise PublishError(f"HTTP {e.code} from {_redact(url)}") from None
        except urllib.error.URLError as e:
            raise PublishError(f"cannot reach {_redact(url)}: {e.reason}; check --repository-url/--index-url") \
                from None
    raise PublishError(f"too many redirects from {_redact(url)}")


def _redact(url: str) -> str:
    return split_userinfo(url)[0]


@dataclass
class Index:
    """The read side of the index (its simple API)."""
    url: str                  # .../simple/
    creds: Credentials

    @property
    def origin(self):
        return _origin(self.url)

    def project_files(self, project: str) -> list[si.IndexFile] | None:
        page = urljoin(self.url if self.url.endswith("/") else self.url + "/", f"{project}/")
        resp = _open(page, self.creds, self.origin, accept=si.ACCEPT)
        if resp is None:
            return None
        with resp:
            body = resp.read().decode("utf-8", "replace")
            return si.parse_project_page(body, resp.headers.get("Content-Type", ""), resp.geturl())

    def sha256_of(self, f: si.IndexFile) -> str:
        resp = _open(f.url, self.creds, self.origin)
        if resp is None:
            raise PublishError(f"{f.filename} is listed on the index but its URL {_redact(f.url)} answers 404")
        h = hashlib.sha256()
        with resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


def default_index_url(repository_url: str) -> str:
    """The simple API next to an upload URL: pypiserver/devpi-style root -> root/simple/;
    Warehouse's .../legacy/ -> .../simple/. Pass --index-url for anything else."""
    base = repository_url.rstrip("/")
    if base.endswith("/legacy"):
        base = base[: -len("/legacy")]
    return base + "/simple/"


# --------------------------------------------------------------------------- twine

def twine_upload(path: Path, repository_url: str, creds: Credentials, scrub: Scrubber,
                 timeout: float = 600.0) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    env["TWINE_NON_INTERACTIVE"] = "1"
    if creds.username:
        env["TWINE_USERNAME"] = creds.username
    if creds.password:
        env["TWINE_PASSWORD"] = creds.password
    cmd = [sys.executable, "-m", "twine", "--no-color", "upload", "--non-interactive",
           "--disable-progress-bar", "--repository-url", repository_url, str(path)]
    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PublishError(f"twine upload of {path.name} did not finish in {timeout:.0f}s") from None
    out = scrub((proc.stdout or "") + (proc.stderr or "")).strip()
    if proc.returncode != 0:
        hint = ""
        if re.search(r"\b(401|403)\b", out):
            hint = ("\n  fix: the index refused the credentials; set TWINE_USERNAME/TWINE_PASSWORD "
                    "(or keyring) to an account allowed to upload")
        elif "No module named twine" in out:
            hint = "\n  fix: pip install twine (it is in the 'tools' extra)"
        raise PublishError(f"twine upload of {path.name} failed (exit {proc.returncode}):\n"
                           + "\n".join("  | " + line for line in out.splitlines()) + hint)


# --------------------------------------------------------------------------- verify

@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    messages: list


def load_verifier():
    """A function path -> VerifyResult that runs `blackwheel verify PATH` in-process.

    It goes through the command's own contract (add_arguments/run -> exit code, the same as
    `python -m blackwheel_factory verify WHEEL`), not through verify.py's internals, so publish
    keeps working while those change. None when blackwheel_factory.checks.verify is absent."""
    try:
        mod = importlib.import_module("blackwheel_factory.checks.verify")
    except ModuleNotFoundError as e:
        if e.name != "blackwheel_factory.checks.verify":
            raise
        return None

    def verify(path: Path) -> VerifyResult:
        import argparse
        import contextlib
        import io
        parser = argparse.ArgumentParser(prog="blackwheel verify")
        mod.add_arguments(parser)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                rc = int(mod.run(parser.parse_args([str(path)])) or 0)
            except SystemExit as e:  # argparse or the command itself
                rc = e.code if isinstance(e.code, int) else 1
        return VerifyResult(rc == 0, buf.getvalue().splitlines())

    return verify


def run_verify(path: Path, verifier) -> None:
    if verifier is None:
        raise PublishError("blackwheel_factory.checks.verify is not available in this checkout; publish "
                           "refuses unverified wheels: add it, or pass --skip-verify knowingly")
    result = verifier(path)
    if not result.ok:
        raise PublishError(f"verify failed for {path.name}; not uploading:\n"
                           + "\n".join("  | " + str(m) for m in result.messages)
                           + f"\n  fix: rebuild; details: python -m blackwheel_factory verify {path}")


# --------------------------------------------------------------------------- publish

@dataclass(frozen=True)
class Outcome:
    filename: str
    sha256: str
    action: str     # "uploaded" | "noop"
    url: str


def publish_one(path: Path, repository_url: str, index: Index, creds: Credentials, scrub: Scrubber,
                log=print) -> Outcome:
    filename = path.name
    project = si.project_of(filename)
    local = sha256_file(path)
    remote = si.find_file(index.project_files(project) or [], filename)
    decision = si.decide(filename, local, remote)
    if decision.action == si.DOWNLOAD:
        log(f"  {decision.reason}")
        decision = si.decide(filename, local, remote, downloaded_sha256=index.sha256_of(remote))
    if decision.action == si.CONFLICT:
        raise PublishError(decision.reason)
    if decision.action == si.NOOP:
        log(f"  no-op: {decision.reason}")
        return Outcome(filename, local, "noop", _redact(remote.url))

    log(f"  uploading {filename} (sha256 {local}) to {repository_url}")
    twine_upload(path, repository_url, creds, scrub)

    # Read back: the file must be listed, and its bytes must be ours.
    listed = si.find_file(index.project_files(project) or [], filename)
    if listed is None:
        raise PublishError(f"{filename} was uploaded but is not listed on {index.url}{project}/; "
                           "check that --index-url is the simple API of the repository you upload to")
    if listed.sha256 and listed.sha256 != local:
        raise PublishError(f"{filename}: the index lists sha256 {listed.sha256}, local file is {local}")
    back = index.sha256_of(listed)
    if back != local:
        raise PublishError(f"{filename}: downloaded back sha256 {back} != local {local}; "
                           "the index altered the file: do not use it")
    log(f"  read back {filename} from the index: sha256 {back} matches")
    return Outcome(filename, local, "uploaded", _redact(listed.url))


def add_arguments(parser) -> None:
    parser.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    parser.add_argument("--repository-url", required=True,
                        help="upload endpoint (twine's --repository-url), e.g. https://pypi.example/ "
                             "(pypiserver, devpi) or .../legacy/")
    parser.add_argument("--index-url", default=None,
                        help="simple API of the same repository (default: REPOSITORY_URL/simple/)")
    parser.add_argument("--skip-verify", action="store_true",
                        help="upload without `blackwheel verify` (not for release wheels)")


def run(args) -> int:
    repo_url, creds = resolve_credentials(args.repository_url)
    scrub = Scrubber(creds=creds)
    index_url = args.index_url or default_index_url(repo_url)
    index_url = split_userinfo(index_url)[0]
    index = Index(index_url if index_url.endswith("/") else index_url + "/", creds)
    paths = [Path(p) for p in args.wheels]
    for p in paths:
        if not p.is_file():
            print(f"blackwheel publish: error: {p}: no such file; pass built wheels (dist/*.whl)",
                  file=sys.stderr)
            return 2
        try:
            si.project_of(p.name)
        except si.SimpleIndexError as e:
            print(f"blackwheel publish: error: {e}", file=sys.stderr)
            return 2
    verifier = None if args.skip_verify else load_verifier()
    failed = 0
    for p in paths:
        print(f"{p.name}:")
        try:
            if args.skip_verify:
                print("  verify skipped (--skip-verify)")
            else:
                run_verify(p, verifier)
                print("  verify: ok")
            out = publish_one(p, repo_url, index, creds, scrub)
            print(f"  {'published' if out.action == 'uploaded' else 'unchanged'}: {out.url} sha256={out.sha256}")
        except (PublishError, si.SimpleIndexError) as e:
            print(f"blackwheel publish: error: {scrub(str(e))}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
