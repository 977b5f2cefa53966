"""The rows of `python -m matderiv bench`, one module per area: jacobian, kronecker,
conv_jacobian, gradients, statistics, pipeline, layers (convolutions), embedding, (with the
dask extra) dask and (where torch is installed, not under --quick) peers, against
torch.func, BackPACK and Opacus; routes, a section of its own (each batched function
against the best plain-numpy route on a grid of sequence shapes); timing holds the harness
(best_time, the write-once floor, the table)."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TextIO

from .timing import Row


def areas(quick: bool) -> Iterator[tuple[str, list[Row]]]:
    """(area, its rows), one area at a time as it is measured (dask and peers only where
    installed, peers not under --quick: `skipped` says why an area is left out)."""
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
        pass
    else:
        yield "dask", dask.dask_rows(quick)
    if not skipped(quick):
        from . import peers

        yield "peers", peers.peer_rows(quick)


def have_torch() -> bool:
    """Whether torch can be imported here (the peers area needs it)."""
    return importlib.util.find_spec("torch") is not None


def skipped(quick: bool) -> list[str]:
    """A line for each area that `areas` leaves out of this run, saying why."""
    if quick:
        return ["peers: left out of --quick (full-size layers against torch.func, BackPACK and Opacus); "
                "`python -m matderiv bench` runs it where torch is installed"]
    if not have_torch():
        return ["peers: skipped, torch is not installed (the comparisons with torch.func, BackPACK and Opacus need it)"]
    return []


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
