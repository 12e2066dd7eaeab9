"""The memory a CUDA context and PyTorch's CUDA start take on one GPU, before any tensor exists.

The driver reserves local memory (per-thread stacks) for every thread that can be resident at once:
multiprocessors x resident threads per multiprocessor x a per-thread size (cudaDeviceSetLimit's
cudaLimitStackSize, 1 KiB by default, in the CUDA runtime API reference). With lazy module loading (from
CUDA 11.7, turned on by PyTorch, and the driver's default from CUDA 12.2) kernel images load when first
run, so what is left is small and much the same on every GPU: the printf FIFO (1 MiB) and device malloc
heap (8 MiB) defaults, the driver's own structures and the few kernels PyTorch runs at start.

Public measurements of a bare context (cudaMemGetInfo, no PyTorch; ggml-org/llama.cpp pull request #23604)
show that per-thread reservation: 555 MiB on an RTX PRO 6000 Blackwell (188 multiprocessors) and 107 MiB
on an RTX 4060 Ti (34), both at 1,536 resident threads per multiprocessor, rise by 2.91 MiB per
multiprocessor, 1.94 KiB per resident thread: the driver reserves about twice the default stack limit.
The plan takes 2 KiB per resident thread, and for the rest the most any measurement with PyTorch leaves
beyond it: 91 MiB, on an H100 SXM (PyTorch 2.11, CUDA 13: 619 MiB measured by torch.zeros(1) on the GPU
and torch.cuda.mem_get_info, less 132 x 2,048 x 2 KiB = 528 MiB). The other public figures stay below the
result: an L4's 0.19 GiB used at a vLLM 0.29 start (21.84 of 22.03 GiB free; 265 MiB here), an RTX 3090's
256 MiB under PyTorch 2.7 (invoke-ai/InvokeAI issue #9413; 337 MiB here), an A100 80GB's 0.41 GiB at a
vLLM 0.31 start (79.25 GiB total; 523 MiB here), an L40S's 0.49 GiB at a vLLM tensor-parallel start
(44.42 GiB total, NCCL included; 517 MiB here) and an H200's 0.51 GiB at a vLLM start (139.29 of 139.8 GiB
free; 619 MiB here). A start's used memory holds the context and more, so it bounds the context from
above. NCCL's buffers and cuBLAS's workspace are not part of it: the engines count them as non-torch memory.
"""

from __future__ import annotations

from vramgate.sizing.units import KIB, MIB

# Maximum resident threads per multiprocessor by compute capability: the "Features and Technical
# Specifications" table of NVIDIA's CUDA C++ Programming Guide (1,536 for 8.6 also in pytorch/pytorch
# pull request #45889, which cites it), remembered rather than read from a stored page.
MAX_RESIDENT_THREADS_PER_SM: dict[str, int] = {
    "7.0": 2048,
    "7.5": 1024,
    "8.0": 2048,
    "8.6": 1536,
    "8.7": 2048,
    "8.9": 1536,
    "9.0": 2048,
    "10.0": 2048,
    "12.0": 1536,
}
# A compute capability not listed takes the most any has: its context is then never counted short.
MOST_RESIDENT_THREADS_PER_SM = max(MAX_RESIDENT_THREADS_PER_SM.values())
LOCAL_MEMORY_BYTES_PER_THREAD = 2 * KIB
CONTEXT_REST_BYTES = 91 * MIB
# A GPU whose multiprocessors are not known (only its memory is) keeps the context measured on the H100,
# the figure every GPU took before this model.
UNMEASURED_CONTEXT_BYTES = 620 * MIB


def cuda_context_bytes(compute_capability: str, multiprocessors: int | None) -> int:
    """What a process's CUDA context and PyTorch's CUDA start hold on a GPU of that compute capability
    and number of streaming multiprocessors (None: not known)."""
    if multiprocessors is None:
        return UNMEASURED_CONTEXT_BYTES
    threads = MAX_RESIDENT_THREADS_PER_SM.get(compute_capability, MOST_RESIDENT_THREADS_PER_SM)
    return multiprocessors * threads * LOCAL_MEMORY_BYTES_PER_THREAD + CONTEXT_REST_BYTES
