"""Sparse-decode kernels (Triton on CUDA) with plain-torch references."""
