"""``heap.keep_freed_memory``: a training loop's arrays, freed and allocated again every
step, reuse the process's memory instead of page-faulting it back from the OS."""

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import resource, sys, numpy as np
from pgrun.train import limit_threads
if sys.argv[1] == "kept":
    limit_threads(1)  # what every training process calls first
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # an update's activations: 12 arrays of a 5-seed (K, B, 64) layer, then freed
    return [np.ones((5, 256, 64), np.float32) for _ in range(12)]
for _ in range(3):
    step()
before = faults()
for _ in range(50):
    step()
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_training_process_keeps_freed_memory_instead_of_faulting_it_back():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, check=True)
        return int(out.stdout.split()[-1])

    # each step's 3.9 MB page-faults back in (≈960 pages) unless the memory is kept
    assert faults("default") > 50 * 500
    assert faults("kept") < 50 * 10
