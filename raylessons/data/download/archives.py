"""fast.ai-hosted `.tgz` archives (CamVid, BIWI, IMDB, the WT103 language model): fetch, verify, unpack.

Sizes and checksums are fastai's own (`_checks` in fastai v1 `datasets.py`, the same values in
fastai v2 `checks.txt`). fastai's md5 covers only the first MiB of an archive (`_check_file`
hashes `f.read(2**20)`), so an entry says how many leading bytes its md5 covers in `md5_bytes`
(None = the whole file). A `None` size or checksum means unknown, and that check is skipped.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from raylessons.errors import ConfigError, DownloadError

__all__ = ["ARCHIVES", "download"]

_MIB = 2 ** 20
ARCHIVES: dict[str, dict] = {
    "camvid": {"url": "https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz", "size": 598_913_237,
               "md5": "648371e4f3a833682afb39b08a3ce2aa", "md5_bytes": _MIB, "sha256": None, "root": "camvid"},
    "biwi": {"url": "https://s3.amazonaws.com/fast-ai-imagelocal/biwi_head_pose.tgz", "size": 452_316_199,
             "md5": "00f4ccf66e8cba184bc292fdc08fb237", "md5_bytes": _MIB, "sha256": None,
             "root": "biwi_head_pose"},
    "imdb": {"url": "https://s3.amazonaws.com/fast-ai-nlp/imdb.tgz", "size": 144_440_600,
             "md5": "90f9b1c4ff43a90d67553c9240dc0249", "md5_bytes": _MIB, "sha256": None, "root": "imdb"},
    # files.fast.ai is the lesson-era host; fastai v2 lists the same bytes (size, md5) on S3
    "imdb_sample": {"url": "http://files.fast.ai/data/examples/imdb_sample.tgz", "size": 571_827,
                    "md5": "0842e61a9867caa2e6fbdb14fa703d61", "md5_bytes": _MIB, "sha256": None,
                    "root": "imdb_sample",
                    "mirrors": ["https://s3.amazonaws.com/fast-ai-sample/imdb_sample.tgz"]},
    # URLs.WT103_FWD (n_hid 1152): lstm_fwd.pth + itos_wt103.pkl
    "wt103": {"url": "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz", "size": 105_067_061,
              "md5": "7d1114cd9684bf9d1ca3c9f6a54da6f9", "md5_bytes": _MIB, "sha256": None, "root": "wt103-fwd"},
}
_CHUNK = 1 << 16


def _manual_help(spec: dict, dest: Path) -> str:
    """How to install an archive by hand when this machine cannot download it."""
    size = f" ({spec['size']:,} bytes)" if spec.get("size") else ""
    root = spec.get("root")
    strip = " --strip-components=1" if root else ""
    inside = f"the contents of its '{root}/' folder" if root else "its contents"
    return (f"To install it by hand, download {spec['url']}{size} on a machine with internet access and "
            f"extract it so that {dest} holds {inside}, e.g. "
            f"`mkdir -p {dest} && tar -xzf {Path(spec['url']).name} -C {dest}{strip}`.")


class _Progress:
    """Writes a download progress line to stderr at most every 2 s."""

    def __init__(self, url: str, total: int | None):
        self.url, self.total, self.last = url, total, 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 2.0:
            return
        self.last = now
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        sys.stderr.write(f"\r{Path(self.url).name}: {done / _MIB:,.1f} MiB{share}" + ("\n" if final else ""))
        sys.stderr.flush()


def _stream(url: str, target: Path, spec: dict, timeout: float) -> tuple[int, str | None, str | None]:
    """Copy `url` into `target`; return (bytes, md5 of the leading md5_bytes, sha256 of all)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    md5_left = spec.get("md5_bytes") or float("inf")
    done = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
        length = response.headers.get("Content-Length")
        progress = _Progress(url, spec.get("size") or (int(length) if length else None))
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            if md5_left > 0:
                md5.update(chunk[: int(min(md5_left, len(chunk)))])
                md5_left -= len(chunk)
            sha.update(chunk)
            done += len(chunk)
            progress(done)
        progress(done, final=True)
    return done, md5.hexdigest(), sha.hexdigest()


def _verify(spec: dict, url: str, got: tuple[int, str, str]) -> None:
    """Compare size and checksums with the known values; DownloadError naming expected vs got."""
    size, md5, sha = got
    checks = [("size", spec.get("size"), size), ("md5", spec.get("md5"), md5), ("sha256", spec.get("sha256"), sha)]
    for what, expected, actual in checks:
        if expected is not None and expected != actual:
            span = f" of the first {spec['md5_bytes']:,} bytes" if what == "md5" and spec.get("md5_bytes") else ""
            raise DownloadError(f"{url}: {what}{span} mismatch: expected {expected}, got {actual}; the partial "
                                f"download was removed. Retry, or the file on the server may have changed.")


def _fetch(name: str, spec: dict, folder: Path, dest: Path, timeout: float) -> Path:
    """Download the archive (trying mirrors when a host fails) into a temp file in `folder`."""
    failures = []
    for url in [spec["url"], *spec.get("mirrors", [])]:
        handle, part = tempfile.mkstemp(prefix=f".{name}-", suffix=".tgz.part", dir=folder)
        os.close(handle)
        part = Path(part)
        try:
            got = _stream(url, part, spec, timeout)
            _verify(spec, url, got)
            return part
        # URLError and timeouts are OSErrors; HTTPException covers a connection cut mid-body;
        # ValueError a malformed URL
        except (OSError, http.client.HTTPException, ValueError) as error:
            part.unlink(missing_ok=True)
            reason = getattr(error, "reason", None) or error
            if isinstance(error, urllib.error.HTTPError):
                reason = f"HTTP {error.code} {error.reason}"
            failures.append(f"{url} ({reason})")
        except BaseException:
            part.unlink(missing_ok=True)  # checksum mismatch, Ctrl-C: never leave a partial file
            raise
    raise DownloadError(f"{name}: the archive URL could not be reached: {'; '.join(failures)}. This machine "
                        f"may be offline, or the host may have moved. {_manual_help(spec, dest)}")


def _check_members(archive: tarfile.TarFile, root: Path, source: str) -> None:
    """Reject members that would land outside `root` (absolute, `..`, escaping links, devices)."""
    base = root.resolve()
    for member in archive.getmembers():
        target = (base / member.name).resolve()
        problem = None
        if Path(member.name).is_absolute() or not target.is_relative_to(base):
            problem = "its path escapes the destination"
        elif member.issym() or member.islnk():
            link_base = target.parent if member.issym() else base
            link_target = (link_base / member.linkname).resolve()
            if Path(member.linkname).is_absolute() or not link_target.is_relative_to(base):
                problem = f"it links outside the destination ({member.linkname})"
        elif not (member.isfile() or member.isdir()):
            problem = "it is a device or special file"
        if problem:
            raise DownloadError(f"{source}: refusing to extract member {member.name!r}: {problem}. "
                                f"The archive may be corrupt or malicious; nothing was extracted.")


def _extract(archive_path: Path, dest: Path, root: str | None, source: str) -> None:
    """Unpack into a temp folder beside `dest`, then move the archive's `root` folder to `dest`."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-extract-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                _check_members(archive, staging, source)
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(staging, **extra)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DownloadError(f"{source}: could not unpack the archive: {error}") from error
        content = staging / root if root else staging
        if not content.is_dir():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise DownloadError(f"{source}: the archive has no '{root}/' folder (found: {found})")
        if dest.is_dir():
            dest.rmdir()  # only an empty folder reaches here: a filled one was skipped
        os.replace(content, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_extracted(dest: Path) -> bool:
    return dest.is_dir() and any(dest.iterdir())


def download(name: str, dest: Path, *, timeout: float = 30.0) -> Path:
    """Fetch fast.ai archive `name`, verify it, and unpack its root folder as `dest` (skipped if present)."""
    if name not in ARCHIVES:
        raise ConfigError(f"unknown archive {name!r}; choose one of {', '.join(ARCHIVES)}")
    spec, dest = ARCHIVES[name], Path(dest).expanduser()
    if _is_extracted(dest):
        print(f"{name}: {dest} already holds the data; skipping the download", file=sys.stderr)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"{name}: downloading {spec['url']}", file=sys.stderr)
    archive = _fetch(name, spec, dest.parent, dest, timeout)
    try:
        _extract(archive, dest, spec.get("root"), spec["url"])
    finally:
        archive.unlink(missing_ok=True)  # the unpacked data is what is kept
    return dest
