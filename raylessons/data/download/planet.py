"""The real Planet data from Kaggle: train_v2.csv and train-jpg/, fetched with the kaggle CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from raylessons.errors import ConfigError, DownloadError

__all__ = ["COMPETITION", "download"]

COMPETITION = "planet-understanding-the-amazon-from-space"
_PAGE = f"https://www.kaggle.com/c/{COMPETITION}"
_CSV, _CSV_ZIP = "train_v2.csv", "train_v2.csv.zip"
_JPG, _JPG_7Z = "train-jpg", "train-jpg.tar.7z"
_NETWORK_HINTS = ("connectionerror", "connection refused", "connection reset", "max retries",
                  "name or service not known", "temporary failure in name resolution",
                  "timed out", "network is unreachable", "newconnectionerror", "ssl")
# phrases, not bare numbers: a progress line such as "403k/600M" must not read as HTTP 403
_HTTP_HINTS = {
    401: ("401 -", "401 client error", "unauthorized", "http 401", "error 401"),
    403: ("403 -", "403 client error", "forbidden", "http 403", "error 403"),
    404: ("404 -", "404 client error", "not found", "http 404", "error 404"),
}


def download(name: str, dest: Path) -> Path:
    """Fetch and unpack Planet's train_v2.csv and train-jpg/ into `dest`; return `dest`."""
    if name != "planet":
        raise ConfigError(f"raylessons.data.download.planet only fetches 'planet', not {name!r}")
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the data folder {dest}: {err.strerror}; pick another "
                            "destination") from None
    if not (dest / _CSV).is_file():
        _unzip_csv(_fetch(_CSV_ZIP, dest), dest)
    if not _has_jpgs(dest / _JPG):
        _extract_7z(_fetch(_JPG_7Z, dest), dest)
    return dest


# --- fetching with the kaggle CLI ---

def _fetch(file: str, dest: Path) -> Path:
    """Return dest/file, downloading it first unless the user already placed it there."""
    archive = dest / file
    if archive.is_file():
        return archive
    cli = shutil.which("kaggle")
    if cli is None:
        raise DownloadError(
            "the kaggle command-line tool is not on PATH: run `pip install kaggle`, or download "
            f"{file} by hand from {_PAGE}/data and put it in {dest}")
    secrets = _credentials()
    cmd = [cli, "competitions", "download", "-c", COMPETITION, "-f", file, "-p", str(dest)]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as err:
        raise DownloadError(f"could not start the kaggle CLI at {cli}: {err}") from None
    output = _relay(proc)
    if proc.wait() != 0 or _looks_failed(output):
        raise DownloadError(_explain(output, file, dest, secrets))
    if not archive.is_file() and (dest / f"{file}.zip").is_file():
        # some CLI versions wrap a single requested file in a zip of its own
        with zipfile.ZipFile(dest / f"{file}.zip") as zf:
            zf.extract(_member(zf, file, dest / f"{file}.zip"), dest)
    if not archive.is_file():
        raise DownloadError(f"the kaggle CLI finished but {archive} is missing; its output was:\n"
                            + _redact(output[-1500:], secrets))
    return archive


def _relay(proc: subprocess.Popen) -> str:
    """Echo the CLI's progress to stderr as it comes and return everything it printed."""
    chunks = []
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
        sys.stderr.write(chunk.decode(errors="replace"))
    proc.stdout.close()
    return b"".join(chunks).decode(errors="replace")


def _credentials() -> list[str]:
    """Check that the kaggle CLI will find an API token; return the secrets to redact."""
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        return [key]
    candidates = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        candidates.append(Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json")
    candidates.append(Path.home() / ".kaggle" / "kaggle.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    candidates.append(Path(config_home) / "kaggle" / "kaggle.json")
    for path in candidates:
        if path.is_file():
            return _read_token(path)
    raise DownloadError(
        "no Kaggle API credentials: on https://www.kaggle.com/settings click 'Create New Token', "
        f"save the kaggle.json it gives you as {candidates[0]} and run `chmod 600 {candidates[0]}` "
        "(or set KAGGLE_USERNAME and KAGGLE_KEY)")


def _read_token(path: Path) -> list[str]:
    try:
        token = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DownloadError(f"{path} is not a readable JSON Kaggle token ({type(err).__name__}); "
                            "download a fresh kaggle.json from https://www.kaggle.com/settings") from None
    if not isinstance(token, dict) or not token.get("username") or not token.get("key"):
        raise DownloadError(f"{path} lacks a 'username' or 'key' entry; download a fresh kaggle.json "
                            "from https://www.kaggle.com/settings")
    return [str(token["key"])]


def _looks_failed(output: str) -> bool:
    # some CLI versions print an HTTP error and still exit 0
    low = output.lower()
    return any(hint in low for hints in _HTTP_HINTS.values() for hint in hints)


def _explain(output: str, file: str, dest: Path, secrets: list[str]) -> str:
    """Turn the CLI's output into an actionable message that contains no secret."""
    low = output.lower()
    if any(hint in low for hint in _HTTP_HINTS[403]):
        return (f"Kaggle refused {file} (HTTP 403): sign in and accept the competition rules at "
                f"{_PAGE}/rules, then run this again")
    if any(hint in low for hint in _HTTP_HINTS[404]):
        return (f"Kaggle no longer serves {file} through its API (HTTP 404): download it by hand "
                f"from {_PAGE}/data (or a public torrent of the competition data) and put it in {dest}; "
                "already-present archives are used as they are")
    if any(hint in low for hint in _HTTP_HINTS[401]):
        return ("Kaggle rejected the API credentials (HTTP 401): create a new token at "
                "https://www.kaggle.com/settings and replace kaggle.json (chmod 600)")
    if any(hint in low for hint in _NETWORK_HINTS):
        return (f"network error while downloading {file} from Kaggle: check the connection "
                "(and any proxy) and run this again")
    return f"`kaggle competitions download` failed for {file}:\n" + _redact(output[-1500:], secrets)


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- unpacking ---

def _member(zf: zipfile.ZipFile, name: str, where: Path) -> str:
    """The member of zf whose base name is `name`."""
    for member in zf.namelist():
        if Path(member).name == name:
            return member
    raise DownloadError(f"{where} holds no {name}; delete it and run this again")


def _unzip_csv(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(_member(zf, _CSV, archive))
    except zipfile.BadZipFile:
        raise DownloadError(f"{archive} is not a valid zip (an interrupted download?): delete it "
                            "and run this again") from None
    partial = dest / f".{_CSV}.partial"
    partial.write_bytes(data)
    partial.replace(dest / _CSV)  # atomic: a half-written csv never looks finished


def _has_jpgs(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.jpg"))


def _extract_7z(archive: Path, dest: Path) -> None:
    """Unpack train-jpg.tar.7z into dest/train-jpg via a scratch folder, so a crash leaves no half folder."""
    with tempfile.TemporaryDirectory(prefix=".train-jpg-", dir=dest,
                                     ignore_cleanup_errors=True) as scratch:
        scratch = Path(scratch)
        tool = shutil.which("7za") or shutil.which("7z") or shutil.which("7zz")
        if tool:
            _untar_from_7z_tool(tool, archive, scratch)
        else:
            _untar_with_py7zr(archive, scratch)
        found = scratch / _JPG if (scratch / _JPG).is_dir() else scratch
        if not _has_jpgs(found):
            raise DownloadError(f"{archive} unpacked to no {_JPG}/*.jpg: delete it and download again")
        if (dest / _JPG).exists():
            shutil.rmtree(dest / _JPG)  # an empty or half-made folder from an earlier try
        found.rename(dest / _JPG)


def _untar_from_7z_tool(tool: str, archive: Path, out: Path) -> None:
    # `7za x -so file | tar xf -`, with Python's tarfile reading the stream
    proc = subprocess.Popen([tool, "x", "-so", "-bd", "-y", str(archive)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            _safe_extractall(tar, out)
    except tarfile.TarError as err:
        proc.kill()
        proc.wait()
        raise DownloadError(f"{archive} did not unpack ({err}; {tool} said: "
                            f"{proc.stderr.read().decode(errors='replace')[-300:].strip()}): "
                            "delete it and download again") from None
    finally:
        proc.stdout.close()
    if proc.wait() != 0:
        raise DownloadError(f"{tool} failed on {archive}: "
                            f"{proc.stderr.read().decode(errors='replace')[-300:].strip()}; "
                            "delete it and download again")


def _untar_with_py7zr(archive: Path, out: Path) -> None:
    try:
        import py7zr
    except ImportError:
        raise DownloadError(
            f"no 7-Zip tool to unpack {archive}: install one with `apt-get install p7zip-full` "
            "(or `brew install p7zip`), or `pip install py7zr`") from None
    try:
        with py7zr.SevenZipFile(archive) as sz:
            sz.extractall(path=out)
    except Exception as err:  # py7zr raises several unrelated types for a bad archive
        raise DownloadError(f"{archive} did not unpack with py7zr ({err}): delete it and download "
                            "again") from None
    for inner in sorted(out.rglob("*.tar")):
        with tarfile.open(inner) as tar:
            _safe_extractall(tar, out)
        inner.unlink()


def _safe_extractall(tar: tarfile.TarFile, out: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # refuses absolute paths and '..' members
        tar.extractall(out, filter="data")
    else:
        tar.extractall(out)
