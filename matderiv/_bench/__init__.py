"""The rows of `python -m matderiv bench`, one module per area: jacobian, kronecker,
conv_jacobian, gradients, statistics, pipeline, layers (convolutions), embedding and (with the dask extra) dask; routes, a section of its
own (each batched function against the best plain-numpy route on a grid of sequence
shapes); timing holds the harness (best_time, the write-once floor, the table)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from .timing import Row


def areas(quick: bool) -> Iterator[tuple[str, list[Row]]]:
    """(area, its rows), one area at a time as it is measured (dask only where installed)."""
    from . import conv_jacobian, embedding, gradients, jacobian, kronecker, layers, pipeline, statistics

    yield "jacobian", jacobian.jacobian_rows(quick)
    yield "kronecker", kronecker.kronecker_rows(quick)
    yield "conv_jacobian", conv_jacobian.conv_jacobian_rows(quick)
    yield "gradients", gradients.gradient_rows(quick)
    yield "statistics", statistics.statistics_rows(quick)
    yield "pipeline", pipeline.pipeline_rows(quick)
    yield "layers", layers.layer_rows(quick)
    yield "embedding", embedding.embedding_rows(quick)
    try:
        from . import dask
    except ImportError:  # the dask extra is not installed
        return
    yield "dask", dask.dask_rows(quick)


def as_json(measured: list[tuple[str, list[Row]]]) -> list[dict]:
    """The rows as JSON-ready records: times in seconds, None for no floor."""
    return [{"area": area, "case": row.case, "ours_s": row.ours, "floor_s": row.floor, "refs_s": dict(row.refs)}
            for area, rows in measured for row in rows]


def print_routes(quick: bool, file: TextIO) -> None:
    """The routes section: a row per function and shape as it is measured, then the worst."""
    from . import routes

    print(f"\nroutes: matderiv / the best plain-numpy route (budget {routes.SLACK} x + "
          f"{routes.GRACE * 1e3:.1f} ms; 'over' marks a row above it)\n", file=file)
    print(routes.HEADER, file=file)
    print(routes.summary(routes.route_rows(quick, file)), file=file)
