"""Test-wide settings.

OpenAI Triton kernels run through the Triton interpreter on CPU tensors when no NVIDIA GPU is
present; the variable must be set before triton is first imported, hence here.

PyTorch runs single-threaded in tests: the suite shares two cores with the Triton server it starts,
and torch's OpenMP threads spin-wait against it (measured 10-50x slower forward passes with two
threads while the server was busy).
"""

import os
import shutil

import pytest

if not shutil.which("nvidia-smi"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_one_thread():
    """Every test starts single-threaded, whatever the test before it set (``train`` applies ``--threads``)."""
    torch.set_num_threads(1)
    yield
