"""What a run does: train (fit + test), staged pipelines, benchmarks, encrypted inference."""
