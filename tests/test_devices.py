"""GPU claims on a multi-GPU box: concurrent jobs get different GPUs, released when they exit.
The claiming children import only core/gpu_claim.py (no torch), as a stage's claim does."""

from __future__ import annotations

import subprocess
import sys

from ccreid.core.devices import pick_device
from ccreid.core.gpu_claim import claim_gpu


def claim_in_child(lock_dir, count) -> subprocess.Popen:
    code = (
        f"from ccreid.core.gpu_claim import claim_gpu; import sys; "
        f"print(claim_gpu({count}, {str(lock_dir)!r}), flush=True); sys.stdin.read()"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_each_process_claims_its_own_gpu(tmp_path):
    children = [claim_in_child(tmp_path, 3), claim_in_child(tmp_path, 3)]
    holders = {int(child.stdout.readline()): child for child in children}
    assert sorted(holders) == [0, 1]
    holders[0].kill()
    holders[0].wait()  # a killed holder releases its GPU
    third = claim_in_child(tmp_path, 3)
    assert int(third.stdout.readline()) == 0
    for child in (holders[1], third):
        child.communicate("")


def test_every_gpu_taken_falls_back_to_the_first(tmp_path):
    holder = claim_in_child(tmp_path, 1)
    assert int(holder.stdout.readline()) == 0
    assert claim_gpu(1, tmp_path) == 0
    holder.communicate("")


def test_cpu_when_no_gpu():
    assert pick_device().type == "cpu"
    assert str(pick_device("cpu")) == "cpu"
