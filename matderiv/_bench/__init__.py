"""The sections of `python -m matderiv bench`, one module per area: jacobian, kronecker,
conv_jacobian, gradients, statistics, pipeline, layers (convolutions), embedding and
(with the dask extra) dask, each with its rows and what a ratio means there (RATIO);
routes, the last section (each batched function against the best plain-numpy route on a
grid of sequence shapes).  timing holds the harness (best_time, the write-once floor),
table the printing and the JSON records, report the run, plot the ratio chart."""
from __future__ import annotations

from collections.abc import Iterator

from .table import Section


def sections(quick: bool) -> Iterator[Section]:
    """Every section in order, its rows measured one at a time as they are iterated (dask
    only where installed)."""
    from . import conv_jacobian, embedding, gradients, jacobian, kronecker, layers, pipeline, routes, statistics

    yield Section("jacobian", jacobian.RATIO, jacobian.jacobian_rows(quick))
    yield Section("kronecker", kronecker.RATIO, kronecker.kronecker_rows(quick))
    yield Section("conv_jacobian", conv_jacobian.RATIO, conv_jacobian.conv_jacobian_rows(quick))
    yield Section("gradients", gradients.RATIO, gradients.gradient_rows(quick))
    yield Section("statistics", statistics.RATIO, statistics.statistics_rows(quick))
    yield Section("pipeline", pipeline.RATIO, pipeline.pipeline_rows(quick))
    yield Section("layers", layers.RATIO, layers.layer_rows(quick))
    yield Section("embedding", embedding.RATIO, embedding.embedding_rows(quick))
    try:
        from . import dask
    except ImportError:  # the dask extra is not installed
        pass
    else:
        yield Section("dask", dask.RATIO, dask.dask_rows(quick))
    yield Section("routes", routes.RATIO, routes.route_rows(quick), routes.HEADER, routes.row_lines,
                  routes.record, routes.summary)
