"""Where runs, sweeps and exports are stored: a local path, or a URI in a bucket every node reaches
(`s3://bucket/prefix`, `gs://bucket/prefix`), read and written through pyarrow's filesystems (imported on first use).

S3 takes its credentials and region from the usual AWS variables and files (AWS_ACCESS_KEY_ID, AWS_PROFILE,
AWS_DEFAULT_REGION, an instance role, ...); an S3-compatible server (MinIO, Ceph, moto) from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL. GCS uses Google's default credentials. A location that cannot be read or written raises
StorageError naming the URI (never pyarrow's trace). Torch- and Ray-free: Serve's export checks use it.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import shutil
import tempfile
from pathlib import Path

from .errors import ConfigError, DataError, RaylessonsError

__all__ = ["SCHEMES", "StorageError", "copy", "delete", "download", "exists", "fetch_dir",
           "file_sizes", "filesystem", "forwarded_env", "fs_path", "is_dir", "is_uri", "join", "list_dirs",
           "local_mirror", "missing", "normalize", "read_text", "upload", "uri_of", "within", "write_text"]

SCHEMES = ("s3", "gs", "gcs")
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the first set wins
# what a Ray worker needs to reach the same S3 server as the driver (no secrets: credentials stay the nodes' own)
FORWARDED_VARS = (*ENDPOINT_VARS, "AWS_REGION", "AWS_DEFAULT_REGION")
CACHE_VAR = "RAYLESSONS_CACHE"  # local copies of stored files (default ~/.cache/raylessons)


class StorageError(DataError):
    """A stored location (bucket, key or path) cannot be read or written; `where` is its URI."""


def is_uri(location) -> bool:
    """Whether `location` is a URI (`scheme://...`) rather than a local path."""
    return isinstance(location, str) and "://" in location


def _split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of `uri`; ConfigError for another scheme, no bucket or a '..' part."""
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"storage {uri!r}: unsupported scheme {scheme!r}; use s3://bucket/prefix, "
                          "gs://bucket/prefix or a local path")
    parts = [p for p in rest.split("/") if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"storage {uri!r} names no bucket (s3://bucket/prefix)")
    if ".." in parts:
        raise ConfigError(f"storage {uri!r}: '..' is not allowed in a URI")
    return scheme, parts[0], "/".join(parts[1:])


def normalize(uri: str) -> str:
    """`uri` as `scheme://bucket/key` (no doubled or trailing slash)."""
    scheme, bucket, key = _split(uri)
    return f"{scheme}://{bucket}/{key}" if key else f"{scheme}://{bucket}"


def join(location: str | Path, *parts: str) -> str:
    """`location`/parts: a URI for a URI, a local path (as text) for a path."""
    if is_uri(location):
        return normalize(posixpath.join(normalize(location), *map(str, parts)))
    return str(Path(location, *parts))


def fs_path(uri: str) -> str:
    """The path pyarrow's filesystem (and Ray's `storage_path` with a `storage_filesystem`) takes: `bucket/key`."""
    _, bucket, key = _split(uri)
    return f"{bucket}/{key}" if key else bucket


def uri_of(fs, path: str) -> str:
    """A location of `path` on pyarrow filesystem `fs` (e.g. a Ray Checkpoint's): a URI, or a local path."""
    kind = getattr(fs, "type_name", "local")
    if kind == "local":
        return path
    return normalize(f"{'gs' if kind == 'gcs' else kind}://{path}")


def within(location: str, root: str) -> bool:
    """Whether the URI `location` lies in the URI `root` (itself or below it); False for a local path."""
    if not (is_uri(location) and is_uri(root)):
        return False
    location, root = normalize(location), normalize(root)
    return location == root or location.startswith(root + "/")


def forwarded_env() -> dict[str, str]:
    """The S3 endpoint and region variables set here: what Ray workers get to reach the same server."""
    return {k: os.environ[k] for k in FORWARDED_VARS if os.environ.get(k)}


def filesystem(uri: str):
    """The pyarrow filesystem of `uri`'s bucket (an S3 endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."""
    scheme, bucket, _ = _split(uri)
    endpoint = next((os.environ[k] for k in ENDPOINT_VARS if os.environ.get(k)), None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    with _errors(normalize(uri), "connecting to"):
        return _filesystem(scheme, bucket, endpoint, region)


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str, endpoint: str | None, region: str | None):
    import pyarrow.fs as pafs

    if scheme == "s3" and (endpoint or region):
        return pafs.S3FileSystem(**({"endpoint_override": endpoint} if endpoint else {}),
                                 **({"region": region} if region else {}))
    return pafs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]  # S3 finds the bucket's region itself


@contextlib.contextmanager
def _errors(uri: str, doing: str):
    """pyarrow's errors on `uri` as one StorageError line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise missing(uri, doing) from None
    except (OSError, ValueError) as e:
        if isinstance(e, RaylessonsError):  # ours (a bad URI), already clear
            raise
        text = str(e)
        bucket = f"no such bucket {uri.partition('://')[2].split('/')[0]!r}"
        for code, say in (("NO_SUCH_BUCKET", bucket), ("To create buckets", bucket),
                          ("ACCESS_DENIED", "access denied (credentials?)"),
                          ("NETWORK_CONNECTION", "cannot reach the storage server"),
                          ("Couldn't connect", "cannot reach the storage server")):
            if code in text:
                text = say
                break
        raise StorageError(f"{doing} failed: {text.splitlines()[0][:300] if text else type(e).__name__}",
                           uri) from None


def missing(uri: str, doing: str = "reading") -> StorageError:
    """The error for a location that is not there: its bucket missing, or the key."""
    try:
        import pyarrow.fs as pafs

        _, bucket, _ = _split(uri)
        if filesystem(uri).get_file_info(bucket).type == pafs.FileType.NotFound:
            return StorageError(f"{doing} failed: no such bucket {bucket!r}", uri)
    except (OSError, ValueError):
        pass
    return StorageError(f"{doing} failed: not found", uri)


def _info(uri: str):
    with _errors(uri, "reading"):
        return filesystem(uri).get_file_info(fs_path(uri))


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    return _info(uri).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    return _info(uri).type == pafs.FileType.Directory


def read_text(uri: str) -> str:
    """The text of the file at `uri`; StorageError (naming it) when it is missing or unreadable."""
    with _errors(uri, "reading"), filesystem(uri).open_input_stream(fs_path(uri)) as f:
        return f.read().decode()


def write_text(uri: str, text: str) -> None:
    with _errors(uri, "writing"), filesystem(uri).open_output_stream(fs_path(uri)) as f:
        f.write(text.encode())


def _children(uri: str, recursive: bool):
    import pyarrow.fs as pafs

    with _errors(uri, "listing"):
        selector = pafs.FileSelector(fs_path(uri), allow_not_found=True, recursive=recursive)
        return filesystem(uri).get_file_info(selector)


def list_dirs(uri: str) -> list[str]:
    """The names of the directories right under `uri` (none if it does not exist)."""
    import pyarrow.fs as pafs

    return sorted(posixpath.basename(i.path) for i in _children(uri, False) if i.type == pafs.FileType.Directory)


def file_sizes(uri: str) -> dict[str, int]:
    """{path relative to `uri`: size} of every file under the directory `uri`."""
    import pyarrow.fs as pafs

    base = fs_path(uri) + "/"
    return {i.path[len(base):]: i.size for i in _children(uri, True) if i.type == pafs.FileType.File}


def delete(uri: str) -> None:
    """Remove the file or directory at `uri` (nothing if it is not there)."""
    import pyarrow.fs as pafs

    info = _info(uri)
    with _errors(uri, "deleting"):
        if info.type == pafs.FileType.Directory:
            filesystem(uri).delete_dir(fs_path(uri))
        elif info.type == pafs.FileType.File:
            filesystem(uri).delete_file(fs_path(uri))


def _copy(src: str, dst: str, src_fs, dst_fs, uri: str, doing: str) -> None:
    import pyarrow.fs as pafs

    with _errors(uri, doing):
        # uploads to S3 on one thread (https://github.com/apache/arrow/issues/32372, as Ray Train does)
        pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs,
                        use_threads=not isinstance(dst_fs, pafs.S3FileSystem))


def upload(local: str | Path, uri: str) -> None:
    """Copy a local file or directory (its files, recursively) to `uri`; files already there and not in `local`
    stay."""
    import pyarrow.fs as pafs

    local = Path(local)
    if local.is_dir():
        with _errors(uri, "writing"):
            filesystem(uri).create_dir(fs_path(uri))
    _copy(str(local.resolve()), fs_path(uri), pafs.LocalFileSystem(), filesystem(uri), uri, "uploading to")


def download(uri: str, local: str | Path) -> Path:
    """Copy the file or directory at `uri` to `local`; StorageError when it is not there."""
    import pyarrow.fs as pafs

    local = Path(local)
    if not exists(uri):
        raise missing(uri, "downloading")
    (local if is_dir(uri) else local.parent).mkdir(parents=True, exist_ok=True)
    _copy(fs_path(uri), str(local), filesystem(uri), pafs.LocalFileSystem(), uri, "downloading")
    return local


def copy(src: str, dst: str) -> None:
    """Copy the directory `src` to `dst`, both URIs of one bucket store: file by file, inside the store (S3's
    CopyObject: nothing passes through this machine)."""
    sizes = file_sizes(src)
    if not sizes:
        raise missing(src, "copying")
    fs = filesystem(dst)
    with _errors(dst, "copying to"):
        for name in sizes:
            fs.copy_file(f"{fs_path(src)}/{name}", f"{fs_path(dst)}/{name}")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VAR) or "~/.cache/raylessons").expanduser()


def local_mirror(uri: str) -> Path:
    """A local directory for the files of `uri` written on this machine before they are uploaded
    (`<cache>/storage/<scheme>/<bucket>/<key>`), created."""
    scheme, bucket, key = _split(uri)
    path = cache_dir() / "storage" / scheme / bucket / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_dir(uri: str, version: str = "") -> Path:
    """A local copy of the directory at `uri`, downloaded once per (uri, `version`) into
    `<cache>/downloads/` (e.g. an export, versioned by its meta.json): a whole copy or none, even with
    several processes fetching at once."""
    uri = normalize(uri)
    sizes = file_sizes(uri)
    if not sizes:
        raise missing(uri, "downloading")
    key = hashlib.sha256(f"{uri}\0{version}\0{sorted(sizes.items())}".encode()).hexdigest()[:20]
    dest = cache_dir() / "downloads" / f"{posixpath.basename(uri) or 'root'}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=dest.parent))
    try:
        download(uri, tmp)
        got = {str(p.relative_to(tmp)): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
        if got != sizes:
            raise StorageError(f"download incomplete: {len(got)} of {len(sizes)} files", uri)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process renamed its copy first: keep that one
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
