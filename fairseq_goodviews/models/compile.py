"""``model.compile_encoder``: the encoder's modules compiled by ``torch.compile`` (inductor), in place.

Each module is compiled with :meth:`torch.nn.Module.compile`, so its parameters keep their names
(checkpoints stay interchangeable with an eager model's) and compilation happens at its first
call. Inductor builds C++ kernels on the CPU and Triton kernels, whose launcher is C, on a GPU:
without the compiler for the device training will use, :class:`CompileUnavailableError` says so
before a run starts instead of inductor's traceback at the first step.
"""

import os
import shutil
from collections.abc import Iterable

import torch
import torch.nn as nn

from fairseq_goodviews.errors import GoodviewsError

HELP = (
    "compile the encoder with torch.compile (inductor) at its first step: faster steps on GPUs after a "
    "compilation of tens of seconds; needs a C++ compiler on the CPU (g++ or $CXX), a C one on a GPU"
)


class CompileUnavailableError(GoodviewsError, RuntimeError):
    """``model.compile_encoder=true`` where inductor cannot build its kernels (no compiler)."""


def missing_compiler(cuda: bool | None = None) -> str | None:
    """Why inductor cannot build kernels here, or None: a GPU (``cuda``, default: one is visible)
    needs a C compiler (``$CC``, cc, gcc or clang), the CPU a C++ compiler (``$CXX`` or g++)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        names, what = [os.environ.get("CC") or "cc", "gcc", "clang"], "a C compiler ($CC, cc, gcc or clang)"
    else:
        names, what = [os.environ.get("CXX") or "g++"], "a C++ compiler ($CXX or g++)"
    if any(shutil.which(name) for name in names):
        return None
    return f"torch.compile's inductor needs {what} on PATH to build its {'GPU' if cuda else 'CPU'} kernels"


def compile_modules(modules: Iterable[nn.Module]) -> None:
    """Compile each of ``modules`` in place (at its first call); :class:`CompileUnavailableError` first
    when this machine has no compiler for inductor."""
    reason = missing_compiler()
    if reason is not None:
        raise CompileUnavailableError(f"model.compile_encoder=true: {reason}; install one or set it to false")
    for module in modules:
        module.compile()
