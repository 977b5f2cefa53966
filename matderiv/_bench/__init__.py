"""The rows of `python -m matderiv bench`, one module per area: jacobian, kronecker,
conv_jacobian, gradients, statistics, pipeline, layers (convolutions), embedding and (with the dask extra) dask; routes, a section of its
own (each batched function against the best plain-numpy route on a grid of sequence
shapes); timing holds the harness (best_time, the write-once floor, the table)."""
from __future__ import annotations

from typing import TextIO

from .timing import Row


def all_rows(quick: bool) -> list[Row]:
    """Every benchmark row, area by area (the dask rows only where dask is installed)."""
    from . import conv_jacobian, embedding, gradients, jacobian, kronecker, layers, pipeline, statistics

    rows = jacobian.jacobian_rows(quick) + kronecker.kronecker_rows(quick) + conv_jacobian.conv_jacobian_rows(quick)
    rows += gradients.gradient_rows(quick)
    rows += statistics.statistics_rows(quick) + pipeline.pipeline_rows(quick) + layers.layer_rows(quick)
    rows += embedding.embedding_rows(quick)
    try:
        from . import dask
    except ImportError:  # the dask extra is not installed
        return rows
    return rows + dask.dask_rows(quick)


def print_routes(quick: bool, file: TextIO) -> None:
    """The routes section: a row per function and shape as it is measured, then the worst."""
    from . import routes

    print(f"\nroutes: matderiv / the best plain-numpy route (budget {routes.SLACK} x + "
          f"{routes.GRACE * 1e3:.1f} ms; 'over' marks a row above it)\n", file=file)
    print(routes.HEADER, file=file)
    print(routes.summary(routes.route_rows(quick, file)), file=file)
