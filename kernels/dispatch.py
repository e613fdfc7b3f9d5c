"""Which implementation of a training kernel runs: the one rule of ``impl`` for DAM and MBC.

``IMPLS``: ``"auto"`` runs the compiled Triton kernel on CUDA tensors (of a dtype it takes) and
the PyTorch reference otherwise; ``"triton"`` insists on the kernel (CUDA tensors, or the Triton
interpreter: ``TRITON_INTERPRET=1`` set before triton is imported); ``"torch"`` the reference.
"""

from __future__ import annotations

import os

import torch

IMPLS = ("auto", "triton", "torch")


def check_impl(impl: str, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``impl`` is one of ``IMPLS``."""
    if impl not in IMPLS:
        raise ValueError(f"{name}: impl must be one of {IMPLS}, got {impl!r}")


def use_triton(impl: str, tensor: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...] | None = None) -> bool:
    """Whether ``name`` runs its Triton kernel on ``tensor``; ``ValueError`` when ``impl="triton"``
    cannot be honoured (a dtype the kernel does not take, CPU tensors without the interpreter)."""
    check_impl(impl, name)
    if impl == "torch":
        return False
    dtype_ok = dtypes is None or tensor.dtype in dtypes
    if impl == "auto":
        return tensor.is_cuda and dtype_ok
    if not dtype_ok:
        short = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
        kinds = [short.get(d, str(d).removeprefix("torch.")) for d in dtypes]
        listed = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else kinds[0]
        raise ValueError(f"{name}: impl='triton' takes {listed} inputs, got {tensor.dtype}")
    if not tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"{name}: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before triton is imported)"
        )
    return True
