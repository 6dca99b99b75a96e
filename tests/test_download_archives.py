"""fast.ai archive downloads, against a local HTTP server (never the internet)."""
import hashlib
import http.server
import io
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest

from raylessons.data import download as downloads
from raylessons.data.download import archives
from raylessons.errors import ConfigError, DownloadError


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        _Handler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a thread-run HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tgz(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """Write a .tgz holding `members` (name -> bytes) and symlinks; return its bytes."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path.read_bytes()


def _spec(url: str, data: bytes, **changes) -> dict:
    spec = {"url": url, "size": len(data), "md5": hashlib.md5(data).hexdigest(), "md5_bytes": None,
            "sha256": hashlib.sha256(data).hexdigest(), "root": "camvid"}
    return {**spec, **changes}


CAMVID = {"camvid/codes.txt": b"Animal\nArchway\n", "camvid/images/0001TP_006690.png": b"png bytes",
          "camvid/valid.txt": b"0016E5_07959.png\n"}


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_download_verifies_extracts_and_then_skips(server, tmp_path, monkeypatch):
    served, base = server
    data = _tgz(served / "camvid.tgz", CAMVID)
    monkeypatch.setitem(archives.ARCHIVES, "camvid", _spec(f"{base}/camvid.tgz", data))
    dest = tmp_path / "data" / "camvid"
    assert downloads.download("camvid", dest) == dest  # through the package's dispatcher
    assert (dest / "codes.txt").read_bytes() == CAMVID["camvid/codes.txt"]
    assert (dest / "images" / "0001TP_006690.png").read_bytes() == b"png bytes"
    assert _leftovers(dest.parent, "camvid") == []  # no archive or staging folder left behind
    assert _Handler.requests == ["/camvid.tgz"]
    assert archives.download("camvid", dest) == dest
    assert _Handler.requests == ["/camvid.tgz"]  # present: not fetched again


def test_fastai_style_md5_of_the_first_bytes(server, tmp_path, monkeypatch):
    served, base = server
    data = _tgz(served / "camvid.tgz", {**CAMVID, "camvid/big.bin": bytes(range(256)) * 64})
    prefix = hashlib.md5(data[:100]).hexdigest()
    monkeypatch.setitem(archives.ARCHIVES, "camvid",
                        _spec(f"{base}/camvid.tgz", data, md5=prefix, md5_bytes=100, sha256=None))
    assert (archives.download("camvid", tmp_path / "ok") / "big.bin").stat().st_size == 256 * 64
    wrong = _spec(f"{base}/camvid.tgz", data, md5=hashlib.md5(data).hexdigest(), md5_bytes=100, sha256=None)
    monkeypatch.setitem(archives.ARCHIVES, "camvid", wrong)
    with pytest.raises(DownloadError, match="first 100 bytes"):
        archives.download("camvid", tmp_path / "bad")


@pytest.mark.parametrize("field", ["md5", "sha256", "size"])
def test_checksum_or_size_mismatch_removes_the_partial_file(server, tmp_path, monkeypatch, field):
    served, base = server
    data = _tgz(served / "camvid.tgz", CAMVID)
    wrong = {"md5": "0" * 32, "sha256": "f" * 64, "size": len(data) + 1}[field]
    monkeypatch.setitem(archives.ARCHIVES, "camvid", _spec(f"{base}/camvid.tgz", data, **{field: wrong}))
    dest = tmp_path / "data" / "camvid"
    with pytest.raises(DownloadError) as info:
        archives.download("camvid", dest)
    message = str(info.value)
    got = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}[field]
    assert f"{field} mismatch" in message and f"expected {wrong}" in message and f"got {got}" in message
    assert not dest.exists() and _leftovers(dest.parent, "camvid") == []


@pytest.mark.parametrize("members, links, culprit", [
    ({**CAMVID, "camvid/../../evil.txt": b"x"}, None, "camvid/../../evil.txt"),
    ({**CAMVID, "/tmp/raylessons-evil.txt": b"x"}, None, "/tmp/raylessons-evil.txt"),
    (CAMVID, {"camvid/escape": "../../.."}, "camvid/escape"),
])
def test_members_escaping_the_destination_are_refused(server, tmp_path, monkeypatch, members, links, culprit):
    served, base = server
    data = _tgz(served / "camvid.tgz", members, links)
    monkeypatch.setitem(archives.ARCHIVES, "camvid", _spec(f"{base}/camvid.tgz", data))
    dest = tmp_path / "data" / "camvid"
    with pytest.raises(DownloadError, match="refusing to extract") as info:
        archives.download("camvid", dest)
    assert repr(culprit) in str(info.value)
    assert not dest.exists() and _leftovers(dest.parent, "camvid") == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/raylessons-evil.txt").exists()


def test_wrong_root_folder_is_reported(server, tmp_path, monkeypatch):
    served, base = server
    data = _tgz(served / "camvid.tgz", {"other/codes.txt": b"x"})
    monkeypatch.setitem(archives.ARCHIVES, "camvid", _spec(f"{base}/camvid.tgz", data))
    with pytest.raises(DownloadError, match=r"no 'camvid/' folder \(found: other\)"):
        archives.download("camvid", tmp_path / "camvid")
    assert not (tmp_path / "camvid").exists()


def test_unreachable_host_says_offline_and_how_to_install_by_hand(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9/camvid.tgz"  # the discard port: nothing listens there
    monkeypatch.setitem(archives.ARCHIVES, "camvid", {**archives.ARCHIVES["camvid"], "url": url})
    dest = tmp_path / "data" / "camvid"
    with pytest.raises(DownloadError) as info:
        archives.download("camvid", dest, timeout=2.0)
    message = str(info.value)
    assert "could not be reached" in message and "offline" in message
    assert url in message and str(dest) in message and "598,913,237 bytes" in message
    assert "--strip-components=1" in message
    assert _leftovers(dest.parent, "camvid") == []


def test_missing_file_and_mirror_fallback(server, tmp_path, monkeypatch):
    served, base = server
    data = _tgz(served / "camvid.tgz", CAMVID)
    spec = _spec(f"{base}/missing.tgz", data, mirrors=[f"{base}/camvid.tgz"])
    monkeypatch.setitem(archives.ARCHIVES, "camvid", spec)
    assert (archives.download("camvid", tmp_path / "a") / "valid.txt").exists()
    assert _Handler.requests == ["/missing.tgz", "/camvid.tgz"]
    monkeypatch.setitem(archives.ARCHIVES, "camvid", {**spec, "mirrors": []})
    with pytest.raises(DownloadError, match="HTTP 404"):
        archives.download("camvid", tmp_path / "b")


def test_known_archives_and_unknown_names():
    assert set(archives.ARCHIVES) == {"camvid", "biwi", "imdb", "imdb_sample", "wt103"}
    for name, spec in archives.ARCHIVES.items():
        assert spec["url"].endswith(".tgz") and spec["root"] and isinstance(spec["size"], int), name
        assert set(downloads.DOWNLOADS) >= {name} and downloads.DOWNLOADS[name] == "archives"
    # sizes from fastai's own table (lesson3-facts A2, A3, A4, C9)
    sizes = {name: spec["size"] for name, spec in archives.ARCHIVES.items()}
    assert sizes == {"camvid": 598_913_237, "biwi": 452_316_199, "imdb": 144_440_600,
                     "imdb_sample": 571_827, "wt103": 105_067_061}
    assert archives.ARCHIVES["camvid"]["md5"].startswith("648371e4")
    with pytest.raises(ConfigError, match="camvid"):
        archives.download("planet", Path("/nonexistent"))
