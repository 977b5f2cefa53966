"""The rows of `python -m matderiv bench`, one module per area: jacobian, kronecker,
gradients, statistics, pipeline and (with the dask extra) dask; timing holds the
harness (best_time, the write-once floor, the table)."""
from __future__ import annotations

from .timing import Row


def all_rows(quick: bool) -> list[Row]:
    """Every benchmark row, area by area (the dask rows only where dask is installed)."""
    from . import gradients, jacobian, kronecker, pipeline, statistics

    rows = jacobian.jacobian_rows(quick) + kronecker.kronecker_rows(quick) + gradients.gradient_rows(quick)
    rows += statistics.statistics_rows(quick) + pipeline.pipeline_rows(quick)
    try:
        from . import dask
    except ImportError:  # the dask extra is not installed
        return rows
    return rows + dask.dask_rows(quick)
