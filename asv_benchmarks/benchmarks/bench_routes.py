"""asv benchmarks of the sequence routes: each batched function on a few (B, T, n = m)
shapes of the routes grid of `python -m matderiv bench`, timed alone and as its ratio to
the best plain-numpy route (materialize once, in blocks, or the T x T Gram identity)
measured side by side in the same process; the budget is 1.05 plus 0.1 ms."""
import numpy as np

from matderiv._bench import routes

SHAPES = {"8x128x64": (8, 128, 64), "64x8x256": (64, 8, 256), "64x128x64": (64, 128, 64)}


class Routes:
    params = [list(routes.FUNCTIONS), list(SHAPES)]
    param_names = ["function", "B x T x n=m"]

    def setup(self, function, shape):
        B, T, nm = SHAPES[shape]
        rng = np.random.default_rng(0)
        X, G = rng.standard_normal((B, T, nm)), rng.standard_normal((B, T, nm))
        self.fns = routes.route_functions(function, X, G)

    def time_matderiv(self, function, shape):
        self.fns["matderiv"]()

    def track_ratio_to_best_plain_route(self, function, shape):
        times = routes.measure(self.fns, 0.2)
        ours = times.pop("matderiv")
        return ours / min(times.values())

    track_ratio_to_best_plain_route.unit = "ratio"
