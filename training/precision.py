"""Training precision: ``--precision auto|fp32|bf16|fp16`` resolved for a device.

``resolve_precision(requested, device_type) -> Precision`` says what autocast dtype the forward pass
runs in and whether the loss needs gradient scaling. Master weights, the optimizer, the DAM match and
the MBC / smooth-L1 losses stay float32 in every mode (``DetectionLoss`` casts its inputs up).

- ``auto``: on CUDA, bf16 where the GPU has it (Ampere and newer), else fp16 with grad scaling; on
  CPU, bf16 when the CPU has native bf16 instructions (AVX512-BF16 or AMX-BF16, read from the
  kernel's CPU flags or torch's own capability probe), else fp32, with a one-line note saying why.
- ``bf16`` on a CPU without those instructions still runs (oneDNN emulates it), just slowly; the
  note says so.
- ``fp16`` is CUDA only (CPU fp16 autocast has no fast kernels here): asked for on CPU it is an
  error, not a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision this device cannot run; one line."""


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16": what the forward pass runs in
    device_type: str  # "cpu" or "cuda"
    note: str | None = None  # one line for the user when ``auto`` fell back or the choice is slow

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    @property
    def grad_scaling(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        """Context manager for the forward pass (a no-op for fp32)."""
        dtype = self.autocast_dtype
        return torch.autocast(device_type=self.device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def cpu_has_bf16() -> bool:
    """Whether this CPU executes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return True
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "AMX" in capability


def resolve_precision(requested: str, device_type: str) -> Precision:
    if requested not in CHOICES:
        raise PrecisionError(f"--precision {requested!r}: choose one of {', '.join(CHOICES)}")
    if device_type == "cuda":
        if requested == "auto":
            bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            return Precision("bf16" if bf16 else "fp16", "cuda")
        return Precision(requested, "cuda")
    if requested == "fp16":
        raise PrecisionError("--precision fp16 needs a CUDA device; on CPU use bf16 (or auto)")
    native = cpu_has_bf16()
    if requested == "auto":
        if native:
            return Precision("bf16", "cpu")
        return Precision("fp32", "cpu", "this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32")
    if requested == "bf16" and not native:
        return Precision("bf16", "cpu", "bf16 on a CPU without AVX512-BF16/AMX is emulated and slower than fp32")
    return Precision(requested, "cpu")
