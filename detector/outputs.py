"""Every file the detector writes goes through here: checked first, written atomically.

- :func:`check_outputs` runs before any work: an output that is (or lies inside)
  an input, two outputs on one path, an existing directory, or a place that
  cannot be written are one-line :class:`OutputError`\\ s.
- :func:`atomic_path` gives a temporary path beside the target; the writer fills
  it, then it is renamed over the target (``os.replace``). An interrupted write
  leaves the previous file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from detector.errors import DetectorError

PathLike = str | os.PathLike


class OutputError(DetectorError):
    """An output path cannot or must not be written."""


def side_file(out: PathLike, kind: str) -> Path:
    """Where a side table of an output goes: ``<out stem>.<kind>.parquet`` beside it.

    The stem drops the format suffix and the ``.ocsf`` before it: side tables are
    Parquet in the contract's form whatever ``out`` is, so ``alerts.parquet`` gives
    ``alerts.incidents.parquet`` and ``logs.findings.ocsf.jsonl`` gives
    ``logs.findings.incidents.parquet`` (not an OCSF file).
    """
    out = Path(out)
    stem = out.name.rsplit(".", 1)[0].removesuffix(".ocsf")
    return out.with_name(f"{stem}.{kind}.parquet")


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file: same resolved path, or same inode when both exist."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None] | Iterable[tuple[str, PathLike | None]],
) -> None:
    """Refuse outputs that would destroy an input, collide, or cannot be written.

    ``outputs`` and ``inputs`` map a label (``--out``, ``the log``...) to a path
    (``inputs`` may also be (label, path) pairs, as several rule files share a
    label); ``None`` entries are skipped. Raises :class:`OutputError` naming both.
    """
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    given_inputs = [(label, Path(p)) for label, p in pairs if p is not None]
    seen: dict[str, Path] = {}
    for label, value in outputs.items():
        if value is None:
            continue
        path = Path(value)
        for input_label, source in given_inputs:
            if _same(path, source):
                raise OutputError(f"refusing to write {label} {path}: it is {input_label} {source}")
            if _inside(path, source):
                raise OutputError(
                    f"refusing to write {label} {path}: it is inside {input_label} {source}"
                )
        for other_label, other in seen.items():
            if _same(path, other):
                raise OutputError(f"{label} {path} is the same file as {other_label} {other}")
        seen[label] = path
        check_writable(path, label)


def check_writable(path: PathLike, label: str = "output") -> None:
    """Refuse an existing directory, a parent that is a file, or a directory one cannot write."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {label} {path}: it is a directory")
    if path.exists() and not path.is_file():
        return  # a device such as /dev/null: written in place, errors reported then
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # created on write
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {label} {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {label} {path}: directory {folder} is not writable")


def _new_file_mode(target: Path) -> int:
    """The mode the target would get from a plain open(): its own, or 0o666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _why(error: OSError) -> str:
    return error.strerror or str(error)


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed over it on success.

    The temporary name keeps the target's suffix (pandas and matplotlib infer
    formats and compression from it). On any exception the temporary file is
    removed and the target left untouched; an ``OSError`` (disk full, permission
    denied...) becomes a one-line :class:`OutputError`. A target that is a device
    (``/dev/null``) cannot be renamed over: it is written in place.
    """
    target = Path(target)
    if target.exists() and not target.is_file() and not target.is_dir():
        try:
            yield target
        except OSError as error:
            raise OutputError(f"cannot write {target}: {_why(error)}") from None
        return
    check_writable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=f".partial{target.suffix}"
        )
        os.close(handle)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {_why(error)}") from None
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, _new_file_mode(target))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # the data is on disk before the name points at it
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {_why(error)}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(target: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)
