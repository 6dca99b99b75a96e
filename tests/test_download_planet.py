"""Planet download: a fake kaggle CLI (and a fake 7za when no 7-Zip tool is installed)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from raylessons.data.download import planet
from raylessons.errors import DownloadError

CSV = "image_name,tags\ntrain_0,haze primary\ntrain_1,agriculture clear primary water\n"
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
SECRET = "0123456789abcdef-secret-key"

# the fake CLI: copies prepared archives into -p DIR, or prints what the real one prints on errors
FAKE_KAGGLE = """#!{python}
import os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
mode = os.environ.get("FAKE_KAGGLE_MODE", "ok")
if mode == "403":
    print("403 - Forbidden - You must accept this competition's rules (key {secret})")
    sys.exit(1)
if mode == "404":
    print("404 - Not Found")
    sys.exit(1)
if mode == "network":
    print("requests.exceptions.ConnectionError: Max retries exceeded with url")
    sys.exit(1)
file, dest = args[args.index("-f") + 1], args[args.index("-p") + 1]
print("Downloading " + file + " to " + dest)
shutil.copy(os.path.join(os.environ["FAKE_SRC"], file), os.path.join(dest, file))
"""

# the fake 7za: `7za x -so ARCHIVE` writes the tar stream that our fake .tar.7z holds verbatim
FAKE_7ZA = """#!{python}
import sys
args = sys.argv[1:]
assert args[0] == "x" and "-so" in args, args
with open(args[-1], "rb") as f:
    sys.stdout.buffer.write(f.read())
"""


def _tar_bytes(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(f"train-jpg/{name}")
            info.size = len(JPEG)
            tar.addfile(info, io.BytesIO(JPEG))
    return buf.getvalue()


def _script(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable, secret=SECRET))
    path.chmod(0o755)


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """A PATH holding only the fake kaggle (and fake 7za), empty HOME, no Kaggle env vars."""
    bin_dir, src, home = tmp_path / "bin", tmp_path / "src", tmp_path / "home"
    for d in (bin_dir, src, home):
        d.mkdir()
    _script(bin_dir / "kaggle", FAKE_KAGGLE)
    real_7z = shutil.which("7za") or shutil.which("7z")
    with zipfile.ZipFile(src / "train_v2.csv.zip", "w") as zf:
        zf.writestr("train_v2.csv", CSV)
    tar = _tar_bytes(["train_0.jpg", "train_1.jpg"])
    if real_7z:  # build a real .tar.7z with the installed tool and expose it as 7za
        (tmp_path / "train-jpg.tar").write_bytes(tar)
        subprocess.run([real_7z, "a", "-bd", "-y", str(src / "train-jpg.tar.7z"),
                        str(tmp_path / "train-jpg.tar")], check=True, capture_output=True)
        (bin_dir / "7za").symlink_to(real_7z)
    else:
        (src / "train-jpg.tar.7z").write_bytes(tar)
        _script(bin_dir / "7za", FAKE_7ZA)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FAKE_SRC", str(src))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setitem(sys.modules, "py7zr", None)  # `import py7zr` fails even if installed
    return tmp_path


def _token(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kaggle.json").write_text(json.dumps({"username": "someone", "key": SECRET}))
    (folder / "kaggle.json").chmod(0o600)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_success_extracts_csv_and_jpgs_then_skips(kaggle_env):
    _token(kaggle_env / "home" / ".kaggle")
    dest = kaggle_env / "data" / "planet"
    assert planet.download("planet", dest) == dest
    assert (dest / "train_v2.csv").read_text() == CSV
    jpgs = sorted(p.name for p in (dest / "train-jpg").glob("*.jpg"))
    assert jpgs == ["train_0.jpg", "train_1.jpg"]
    assert (dest / "train-jpg" / "train_0.jpg").read_bytes() == JPEG
    calls = _calls(kaggle_env)
    assert len(calls) == 2
    assert all(c.startswith(f"competitions download -c {planet.COMPETITION} -f ") for c in calls)
    assert {c.split()[5] for c in calls} == {"train_v2.csv.zip", "train-jpg.tar.7z"}
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no scratch left behind
    planet.download("planet", dest)  # already extracted: the CLI is not called again
    assert len(_calls(kaggle_env)) == 2


def test_env_credentials_and_config_dir_are_accepted(kaggle_env, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(kaggle_env / "cfg"))
    _token(kaggle_env / "cfg")
    planet.download("planet", kaggle_env / "a")
    assert (kaggle_env / "a" / "train_v2.csv").is_file()
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    planet.download("planet", kaggle_env / "b")
    assert len(list((kaggle_env / "b" / "train-jpg").glob("*.jpg"))) == 2


def test_manually_placed_archives_need_no_cli(kaggle_env, monkeypatch):
    dest = kaggle_env / "manual"
    dest.mkdir()
    for name in ("train_v2.csv.zip", "train-jpg.tar.7z"):
        shutil.copy(kaggle_env / "src" / name, dest / name)
    (kaggle_env / "bin" / "kaggle").unlink()
    planet.download("planet", dest)  # no CLI, no credentials: the archives in place suffice
    assert (dest / "train_v2.csv").read_text() == CSV
    assert _calls(kaggle_env) == []


def test_cli_missing(kaggle_env):
    (kaggle_env / "bin" / "kaggle").unlink()
    with pytest.raises(DownloadError, match="pip install kaggle"):
        planet.download("planet", kaggle_env / "d")


def test_credentials_missing(kaggle_env):
    with pytest.raises(DownloadError, match="no Kaggle API credentials") as err:
        planet.download("planet", kaggle_env / "d")
    assert "kaggle.json" in str(err.value) and "chmod 600" in str(err.value)
    assert _calls(kaggle_env) == []  # fails before running the CLI


def test_broken_token_is_named(kaggle_env):
    (kaggle_env / "home" / ".kaggle").mkdir()
    (kaggle_env / "home" / ".kaggle" / "kaggle.json").write_text("{not json")
    with pytest.raises(DownloadError, match="kaggle.json is not a readable JSON"):
        planet.download("planet", kaggle_env / "d")


@pytest.mark.parametrize("mode, expected", [
    ("403", "accept the competition rules at https://www.kaggle.com/c/"
            "planet-understanding-the-amazon-from-space/rules"),
    ("404", "HTTP 404"),
    ("network", "network error"),
])
def test_cli_errors_are_explained_without_secrets(kaggle_env, monkeypatch, mode, expected):
    _token(kaggle_env / "home" / ".kaggle")
    monkeypatch.setenv("FAKE_KAGGLE_MODE", mode)
    dest = kaggle_env / "d"
    with pytest.raises(DownloadError, match=expected) as err:
        planet.download("planet", dest)
    assert SECRET not in str(err.value)
    if mode == "404":
        assert "download it by hand" in str(err.value) and str(dest) in str(err.value)


def test_unknown_failure_output_is_redacted(kaggle_env, monkeypatch):
    _script(kaggle_env / "bin" / "kaggle",
            "#!{python}\nimport sys\nprint('boom, token was {secret}')\nsys.exit(2)\n")
    _token(kaggle_env / "home" / ".kaggle")
    with pytest.raises(DownloadError, match="boom, token was \\*\\*\\*") as err:
        planet.download("planet", kaggle_env / "d")
    assert SECRET not in str(err.value)


def test_7z_tool_missing(kaggle_env):
    _token(kaggle_env / "home" / ".kaggle")
    (kaggle_env / "bin" / "7za").unlink()
    dest = kaggle_env / "d"
    with pytest.raises(DownloadError, match="p7zip-full") as err:
        planet.download("planet", dest)
    assert "py7zr" in str(err.value)
    assert (dest / "train_v2.csv").is_file()  # the csv step finished before the failure
    assert not (dest / "train-jpg").exists()


def test_corrupt_archive_is_named(kaggle_env):
    _token(kaggle_env / "home" / ".kaggle")
    dest = kaggle_env / "d"
    dest.mkdir()
    (dest / "train-jpg.tar.7z").write_bytes(b"this is not an archive" * 10)
    with pytest.raises(DownloadError, match="train-jpg.tar.7z") as err:
        planet.download("planet", dest)
    assert "delete it" in str(err.value)
    assert not (dest / "train-jpg").exists()


def test_unwritable_destination_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="cannot create the data folder"):
        planet.download("planet", tmp_path / "file" / "planet")


def test_wrong_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="planet"):
        planet.download("camvid", tmp_path)

