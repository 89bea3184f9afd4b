"""Where a log lives: a local path or a URL, opened the way pyarrow reads Parquet.

One job: turn a *location* into a pyarrow file system and a path in it, list
the Parquet files of a dataset directory, and tell a file from a directory.
A location is a local path, or a URL:

- schemes pyarrow implements itself (``file://``, ``s3://``, ``gs://``,
  ``abfs://``, ``hdfs://``) are opened with
  :meth:`pyarrow.fs.FileSystem.from_uri`, credentials taken from the usual
  environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...);
- any other protocol fsspec knows (``memory://``, ``http(s)://``, ``sftp://``,
  ...) through fsspec (``pip install 'logsentinel[remote]'``, plus the
  protocol's own library when it has one), wrapped in
  :class:`pyarrow.fs.PyFileSystem`.

Local paths are handed to pyarrow as they are, as before. Locations stay
strings everywhere else, so that a partition sent to a Dask worker names its
file by URL and the worker opens it itself: file systems are resolved in each
process and cached here, never pickled.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from detector.errors import InputError

Location = str | Path
REMOTE_EXTRA = "pip install 'logsentinel[remote]'"
# Two letters at least before "://", so that a Windows drive ("C:/...") is a path.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# location -> (file system, path in it), per process: a Dask worker resolves its own.
_RESOLVED: dict[str, tuple[pafs.FileSystem, str]] = {}


def is_url(location: Location) -> bool:
    """Is ``location`` a URL (``scheme://...``)? A :class:`~pathlib.Path` never is."""
    return isinstance(location, str) and _URL.match(location) is not None


def as_location(value: str | Path) -> Location:
    """A command-line value as a location: a URL stays text, anything else is a Path.

    (``Path("s3://b/x")`` would fold the double slash: ``s3:/b/x``.)
    """
    return value if is_url(value) else Path(value)


def local_path(location: Location) -> Path | None:
    """The local path a location names (a path, or a ``file://`` URL); None for a remote one."""
    if not is_url(location):
        return Path(location)
    parsed = urlparse(str(location))
    if parsed.scheme.lower() == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    return None


def _scheme(url: str) -> str:
    return _URL.match(url).group(1).lower()


def _fsspec(url: str, scheme: str) -> tuple[pafs.FileSystem, str]:
    """A protocol pyarrow lacks, through fsspec."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise InputError(f"{url}: reading {scheme}:// URLs needs fsspec: {REMOTE_EXTRA}") from None
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise InputError(
            f"{url}: unknown protocol {scheme!r} (neither pyarrow nor fsspec reads it)"
        ) from None
    except ImportError as error:  # fsspec knows it, its library is not installed
        raise InputError(
            f"{url}: the {scheme}:// file system needs a library that is not installed ({error})"
        ) from None
    try:
        filesystem, path = url_to_fs(url)
    except (ImportError, ValueError, OSError) as error:
        raise InputError(f"{url}: cannot open the {scheme}:// file system ({error})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def resolve(location: Location) -> tuple[pafs.FileSystem | None, str]:
    """(file system, path in it) of a location; ``None`` and the path itself for a local path.

    Raises :class:`InputError` for an unknown protocol, a missing library, or a
    file system that cannot be reached.
    """
    if not is_url(location):
        return None, str(location)
    found = _RESOLVED.get(location)
    if found is not None:
        return found
    scheme = _scheme(location)
    try:
        found = pafs.FileSystem.from_uri(location)
    except pa.ArrowInvalid as error:
        if "Unrecognized filesystem type" not in str(error):
            raise InputError(f"{location}: {str(error).splitlines()[0]}") from None
        found = _fsspec(location, scheme)
    except OSError as error:  # hdfs without Java, an unreachable S3 endpoint...
        raise InputError(
            f"{location}: cannot open the {scheme}:// file system ({str(error).splitlines()[0]})"
        ) from None
    _RESOLVED[location] = found
    return found


def kind(location: Location) -> str | None:
    """``"file"``, ``"directory"``, or None when nothing is there."""
    filesystem, path = resolve(location)
    if filesystem is None:
        local = Path(path)
        return "directory" if local.is_dir() else "file" if local.exists() else None
    try:
        info = filesystem.get_file_info(path)
    except OSError as error:
        raise InputError(f"{location}: cannot read ({str(error).splitlines()[0]})") from None
    if info.type == pafs.FileType.Directory:
        return "directory"
    return None if info.type == pafs.FileType.NotFound else "file"


def exists(location: Location) -> bool:
    """Is there a file or a directory at ``location``?"""
    return kind(location) is not None


def parquet_files(location: Location) -> list[str]:
    """The files of a log: the location itself when a file, else its directory's Parquet files.

    A directory's files are those pyarrow reads as one dataset (names starting
    with ``.`` or ``_`` are skipped), in its order, named like ``location``
    (URLs below a URL). Nothing is opened. Raises :class:`InputError` when
    nothing is there or the directory holds no file.
    """
    what = kind(location)
    if what is None:
        raise InputError(f"no such file or directory: {location}")
    if what == "file":
        return [str(location)]
    filesystem, path = resolve(location)
    try:
        # A given (empty) schema: pyarrow lists the files without opening any of them.
        names = ds.dataset(
            path, filesystem=filesystem, format="parquet", schema=pa.schema([])
        ).files
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{location}: cannot list ({str(error).splitlines()[0]})") from None
    if not names:
        raise InputError(f"{location}: no Parquet files in this directory")
    if filesystem is None:
        return names
    root, prefix = str(location).rstrip("/"), path.rstrip("/") + "/"
    urls = []
    for name in names:
        url = root + "/" + name[len(prefix) :] if name.startswith(prefix) else name
        _RESOLVED[url] = (filesystem, name)  # its workers resolve it again themselves
        urls.append(url)
    return urls


def open_parquet(location: Location, **options) -> pq.ParquetFile:
    """A Parquet file at ``location`` (``options``: those of :class:`pyarrow.parquet.ParquetFile`)."""
    filesystem, path = resolve(location)
    return pq.ParquetFile(path, filesystem=filesystem, **options)


def read_schema(location: Location) -> pa.Schema:
    """The Arrow schema of the Parquet file at ``location`` (its footer only)."""
    filesystem, path = resolve(location)
    return pq.read_schema(path, filesystem=filesystem)


def read_table(location: Location, **options) -> pa.Table:
    """The Parquet file at ``location`` (``options``: those of :func:`pyarrow.parquet.read_table`)."""
    filesystem, path = resolve(location)
    return pq.read_table(path, filesystem=filesystem, **options)


def dataset(location: Location, **options) -> ds.Dataset:
    """A pyarrow dataset of ``location`` (``options``: those of :func:`pyarrow.dataset.dataset`)."""
    filesystem, path = resolve(location)
    return ds.dataset(path, filesystem=filesystem, **options)


def name(location: Location) -> str:
    """The last component of a location: ``s3://b/logs/x.parquet`` -> ``x.parquet``."""
    return str(location).rstrip("/").rsplit("/", 1)[-1] if is_url(location) else Path(location).name


def with_name(location: Location, new_name: str) -> Location:
    """The location beside ``location`` called ``new_name`` (a URL for a URL)."""
    if not is_url(location):
        return Path(location).with_name(new_name)
    return str(location).rstrip("/").rsplit("/", 1)[0] + "/" + new_name


__all__ = [
    "as_location",
    "dataset",
    "exists",
    "is_url",
    "kind",
    "local_path",
    "name",
    "open_parquet",
    "parquet_files",
    "read_schema",
    "read_table",
    "resolve",
    "with_name",
]
