"""Compiled kernels (private). Python code outside matderiv never imports these."""
