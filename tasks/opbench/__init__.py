"""Operator benchmark suite (arXiv:2311.04417): cases, peaks, the opbench task."""
