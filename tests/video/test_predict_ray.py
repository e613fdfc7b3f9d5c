"""``acfd predict --ray`` (the cases in ``ray_cases.py``) in a pytest process of their own.

Those cases start a local Ray in the test process (``ray.init``) for speed. Ray's driver leaves
threads and gRPC state in the process after ``ray.shutdown()``, and in the full suite, after the
serving and engine tests had run in the same process, the next test died of a segmentation fault;
run alone, the video tests passed. Their own process keeps the rest of the suite clear of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the cluster extra (pip install 'acfd[cluster]') is not installed")


def test_ray_cases_in_a_process_of_their_own():
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "ray_cases.py")]
    proc = subprocess.run(cmd, cwd=here.parent.parent, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
