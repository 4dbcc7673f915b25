"""Custom autograd ops: reference, Triton kernels, fast CPU path, autograd glue.

One subpackage per op (``maxk``, ``polyact``, ``revsnn``) and the infrastructure they share:
``dispatch`` (backend names and resolution, Triton's checks, fallback warnings) and
``sparse`` (CSR adjacency, its per-graph cache, the torch.sparse SpMM baseline). Imports
nothing of effml's outside ``ops``.
"""
