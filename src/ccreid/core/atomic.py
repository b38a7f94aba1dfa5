"""Atomic outputs: write beside the target under a temporary name, then rename over it.

A killed process leaves at worst a ``.tmp-*`` file, never a half-written output that a rerun
could take for complete. A disk that fills up while writing stops the stage with one message
naming the output, and the temporary is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from ccreid.core.errors import CCReIDError

# A full disk, a file-size limit (ulimit -f) or a quota: the write failed for want of space.
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _default_folder_mode() -> int:
    """What a plain mkdir() would give under the current umask (mkdtemp gives 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


class DiskFullError(CCReIDError):
    """Writing an output ran out of space; the partial output is gone."""


@contextlib.contextmanager
def _naming_a_full_disk(target: Path):
    try:
        yield
    except OSError as error:
        if error.errno not in NO_SPACE:
            raise
        raise DiskFullError(
            f"{target}: ran out of space while writing it ({os.strerror(error.errno)}); the partial "
            f"output was removed. Free space in {target.parent.resolve()} (or lift the file-size "
            f"limit or quota) and rerun the same command."
        ) from None


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n_bytes < 1024:
            return f"{n_bytes:,.0f} {unit}" if unit == "B" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:,.1f} GiB"


def require_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse at once, rather than after the work, when `folder` cannot hold `needed_bytes`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DiskFullError(
            f"{what} needs about {_size(needed_bytes)} in {folder.resolve()}, which has "
            f"{_size(free)} free. Free space there (or write the output elsewhere) and rerun."
        )


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary path in the target's folder; on success rename it to `target`.

    The path is new, not an empty file: the writer creates it. (Truncating an existing file and
    writing it again makes ext4 flush it on close: 3× slower for a 1 GB features.h5.)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with _naming_a_full_disk(target):
            yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path):
    """Yield a temporary folder beside `target`; on success it replaces `target` whole.

    The old folder is first renamed aside, so at every instant `target` is either the old
    complete folder, absent, or the new complete one — never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
    tmp.chmod(_default_folder_mode())
    try:
        with _naming_a_full_disk(target):
            yield tmp
        old = target.with_name(f".old-{target.name}")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def exclusive(target: Path, holder: str = "", companions: tuple[Path, ...] = ()):
    """Hold the lock of `target` (a ``.<name>.lock`` file beside it) while building it.

    A second process asked for the same output (two Snakemake runs sharing a data folder, or
    one run with --nolock) waits here, then finds the output fresh instead of building it
    again. The kernel drops the lock when its holder dies, even by SIGKILL; the temporaries
    such a holder left of `target` and of its `companions` (files written in the same build)
    are removed on taking the lock. `holder` separates the ranks of one distributed job, which
    build together.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}{holder}.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process building {target}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        for path in (target, *map(Path, companions)):
            for stale in path.parent.glob(f".tmp-{path.name}.*"):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        yield


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def atomic_write_json(target: Path, value) -> None:
    atomic_write_text(target, json.dumps(value, indent=2, sort_keys=True) + "\n")
