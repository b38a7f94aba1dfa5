"""Each job's run time and peak memory, in Snakemake's benchmark format (one TSV per job; see
docs/report.md).

Snakemake writes these files itself (every rule has a `benchmark:` at paths.benchmark_path).
Under DVC the `ccreid` stage writes the same file (`--benchmark`), so a result DVC built is
complete for Snakemake too: a missing benchmark file is a missing output, and Snakemake would
delete and rebuild the result to make it. The columns are Snakemake's; what one process cannot
see of itself (virtual, unique and proportional memory, I/O) is NA, as Snakemake writes for what
it could not sample.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import resource
import sys
import time
from pathlib import Path

from ccreid.core.atomic import atomic_write_text
from ccreid.core.errors import CCReIDError
from ccreid.core.fingerprint import record_path

# snakemake.benchmark.BenchmarkRecord.get_header(), in its order.
COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time")
NOT_MEASURED = "NA"


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def _usage() -> tuple[float, float]:
    """CPU seconds (user + system) and peak resident MiB of this process and its waited-for
    children (a preparation's decoding pool): the peaks of the process and of its largest
    child, added."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    per_mib = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return cpu, (own.ru_maxrss + children.ru_maxrss) / per_mib


def _number(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.2f}"  # as Snakemake writes floats


def benchmark_line(seconds: float | None, max_rss_mib: float | None = None, cpu_s: float | None = None) -> str:
    """The header and one record in Snakemake's TSV layout; all NA without `seconds`."""
    if seconds is None:
        values = [NOT_MEASURED] * len(COLUMNS)
    else:
        load = 100 * cpu_s / seconds if cpu_s is not None and seconds > 0 else None
        values = [_number(seconds), _clock(seconds), _number(max_rss_mib), *[NOT_MEASURED] * 5]
        values += [_number(load), _number(cpu_s)]
    return "\t".join(COLUMNS) + "\n" + "\t".join(values) + "\n"


def _state(output: Path) -> tuple[int, int] | None:
    """What changes when a stage rebuilds `output`: its fingerprint record (or the file itself,
    for an output without one, such as downloaded weights)."""
    for path in (record_path(output), Path(output)):
        with contextlib.suppress(OSError):
            stat = path.stat()
            return stat.st_ino, stat.st_mtime_ns
    return None


@contextlib.contextmanager
def benchmarked(path: Path | None, output: Path):
    """Measure the enclosed stage call and write its benchmark to `path` (None: nothing).

    Written when the call rebuilt `output`; a call that found `output` fresh leaves an existing
    benchmark alone (it describes the job that built the output) and, when there is none, writes
    one of NA values: the output is complete for Snakemake, its cost not measured. Nothing is
    written when the stage fails.
    """
    if path is None:
        yield
        return
    path = Path(path)
    before = _state(output)
    start, (cpu_start, _) = time.perf_counter(), _usage()
    yield
    seconds = time.perf_counter() - start
    cpu, peak = _usage()
    if _state(output) != before:
        text = benchmark_line(seconds, peak, cpu - cpu_start)
    elif not path.is_file():
        text = benchmark_line(None)
    else:
        return
    atomic_write_text(path, text)


def read_benchmark(path: Path) -> dict[str, float | None] | None:
    """A benchmark file's numbers by column (None where NA; the last record if Snakemake repeated
    the job); None when there is no file. A file in another layout is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or tuple(lines[0][: len(COLUMNS)]) != COLUMNS or len(lines[-1]) < len(COLUMNS):
        raise CCReIDError(
            f"{path}: not a benchmark file (expected a header of {', '.join(COLUMNS)} and a record); "
            "delete it and rerun the job that writes it"
        )
    record = dict(zip(COLUMNS, lines[-1]))
    numbers: dict[str, float | None] = {}
    for column in ("s", "max_rss", "mean_load", "cpu_time"):
        value = record[column]
        if value in (NOT_MEASURED, "-"):
            numbers[column] = None
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise CCReIDError(f"{path}: column {column!r} holds {value!r}, not a finite number or NA")
        numbers[column] = number
    return numbers
