"""Measuring kernels on the GPU: `tilelang bench` (library vs torch) and `tilelang tune` (grid search).

`timing` times with CUDA-graph replay; `library` holds the benchmark families; `tune` the
search and its heat maps; `commands` registers both on the `tilelang` command line.
"""
