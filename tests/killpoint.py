"""Run one ccreid command and SIGKILL it, with its process group, at a chosen point.

    python killpoint.py count FILE -- ARGS...     run to the end; write to FILE how many
                                                  file-system writes it made and when
    python killpoint.py event N -- ARGS...        kill at the N-th write (1-based), before it happens
    python killpoint.py after SECONDS -- ARGS...  kill SECONDS after the first write
    python killpoint.py nth NAME N -- ARGS...     kill at the N-th write to a file named NAME (opened
                                                  for writing or renamed into place), before it happens

A "write" is an audit event (PEP 578) of this process that changes the file system: an open
for writing, a rename or replace, a removal, a new folder. Those are the instants at which an
output can be left half-made, so killing just before one of them, chosen at random, probes
every step of a stage's write protocol; a timed kill lands inside writes the interpreter does
not see (HDF5 chunks, torch tensors).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def is_write(event: str, args: tuple) -> bool:
    if event == "open":
        _, mode, flags = args
        return bool(flags & WRITE_FLAGS) if mode is None else any(c in mode for c in "wax+")
    return event in CHANGES


def target_name(event: str, args: tuple) -> str:
    """The name of the file a write changes: a rename's destination, else its first argument."""
    path = args[1] if event == "os.rename" else args[0]
    return os.path.basename(os.fsdecode(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""


def kill_group() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main() -> int:
    mode, value, *rest = sys.argv[1:]
    name, count = (value, int(rest.pop(0))) if mode == "nth" else (None, None)
    separator, *args = rest
    assert separator == "--", __doc__
    sys.dont_write_bytecode = True  # a .pyc written on import would count as a write of the stage
    from ccreid.cli import main as ccreid_main

    me = os.getpid()
    writes: list[float] = []
    named_writes = 0
    started = time.monotonic()

    def hook(event: str, event_args: tuple) -> None:
        nonlocal named_writes
        if os.getpid() != me or not is_write(event, event_args):  # forked workers only read
            return
        writes.append(time.monotonic() - started)
        if mode == "nth" and target_name(event, event_args) == name:
            named_writes += 1
            if named_writes == count:
                kill_group()
        if mode == "event" and len(writes) == int(value):
            kill_group()
        if mode == "after" and len(writes) == 1:
            timer = threading.Timer(float(value), kill_group)
            timer.daemon = True
            timer.start()

    sys.addaudithook(hook)
    status = ccreid_main(args)
    if mode == "count":
        summary = {"writes": len(writes), "first": writes[0], "last": writes[-1]}
        with open(value, "w") as handle:  # counted too, but after the summary was taken
            json.dump(summary, handle)
    return status


if __name__ == "__main__":
    sys.exit(main())
