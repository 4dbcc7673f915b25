"""Custom autograd ops: reference, Triton kernels, fast CPU path, autograd glue.

Imports nothing of effml's.
"""
