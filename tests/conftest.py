"""Test-wide settings.

OpenAI Triton kernels run through the Triton interpreter on CPU tensors when no NVIDIA GPU is
present; the variable must be set before triton is first imported, hence here.
"""

import os
import shutil

if not shutil.which("nvidia-smi"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
