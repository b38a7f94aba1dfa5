"""A job's benchmark written by ccreid itself (under DVC): Snakemake's layout, measured only when
the job rebuilt its output, NA for an output found fresh, untouched otherwise; read back as
numbers, with one clear error for a file in another layout."""

from __future__ import annotations

import numpy as np
import pytest

from ccreid.core.benchmark import COLUMNS, benchmarked, read_benchmark
from ccreid.core.errors import CCReIDError
from ccreid.core.fingerprint import record

FINGERPRINT = {"stage": "test", "code": "c", "config": {}, "inputs": {}}


def build(output):
    """A stage's rebuild: the output, then its fingerprint record."""
    output.write_bytes(np.ones(4_000_000).tobytes())  # 32 MB held while writing
    record(output, FINGERPRINT)


def test_a_rebuild_writes_snakemakes_columns_with_its_time_and_memory(tmp_path):
    output, path = tmp_path / "model.pt", tmp_path / "logs/train.benchmark.tsv"
    with benchmarked(path, output):
        build(output)
    header, values = (line.split("\t") for line in path.read_text().splitlines())
    assert tuple(header) == COLUMNS and len(values) == len(COLUMNS)
    numbers = read_benchmark(path)
    assert numbers["s"] >= 0 and numbers["cpu_time"] >= 0
    assert numbers["max_rss"] > 32  # MiB: at least the array it held


def test_a_fresh_output_keeps_its_benchmark_or_gets_one_of_na(tmp_path):
    output, path = tmp_path / "model.pt", tmp_path / "train.benchmark.tsv"
    with benchmarked(path, output):
        build(output)
    measured = path.read_text()
    with benchmarked(path, output):
        pass  # the stage found its output fresh
    assert path.read_text() == measured
    path.unlink()
    with benchmarked(path, output):
        pass
    assert read_benchmark(path) == {"s": None, "max_rss": None, "mean_load": None, "cpu_time": None}
    with benchmarked(path, output):
        build(output)  # rebuilt (a new record): measured again
    assert read_benchmark(path)["s"] is not None


def test_a_failed_stage_writes_no_benchmark(tmp_path):
    output, path = tmp_path / "model.pt", tmp_path / "train.benchmark.tsv"
    with pytest.raises(CCReIDError), benchmarked(path, output):
        raise CCReIDError("the stage failed")
    assert not path.exists()


def test_without_a_path_nothing_is_written(tmp_path):
    output = tmp_path / "model.pt"
    with benchmarked(None, output):
        build(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.fingerprint.json"]


@pytest.mark.parametrize(
    "text, names",
    [
        ("s\th:m:s\n1\t0:00:01\n", "not a benchmark file"),
        ("\t".join(COLUMNS) + "\n", "not a benchmark file"),
        (
            "\t".join(COLUMNS) + "\n" + "\t".join(["1", "0:00:01", "lots"] + ["NA"] * 7) + "\n",
            "'max_rss' holds 'lots', not a finite",
        ),
        ("\t".join(COLUMNS) + "\n" + "\t".join(["inf", "0:00:01"] + ["NA"] * 8) + "\n", "'s' holds 'inf'"),
    ],
)
def test_a_damaged_benchmark_is_named(tmp_path, text, names):
    path = tmp_path / "train.benchmark.tsv"
    path.write_text(text)
    with pytest.raises(CCReIDError, match=names) as error:
        read_benchmark(path)
    assert str(path) in str(error.value)
