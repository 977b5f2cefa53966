"""asv benchmarks for matderiv.conv_patches: B=64, C=16, 32x32 inputs, k=3, padding=1
(patches of 64 x 1024 x 144), float32 and float64, with a peakmem twin."""
import numpy as np

import matderiv as md


class ConvPatches:
    params = (["float32", "float64"],)
    param_names = ["dtype"]

    def setup(self, dtype):
        self.x = np.random.default_rng(0).standard_normal((64, 16, 32, 32)).astype(dtype)

    def time_conv_patches(self, dtype):
        md.conv_patches(self.x, 3, padding=1)

    def peakmem_conv_patches(self, dtype):
        md.conv_patches(self.x, 3, padding=1)
