"""
Benchmark ratios from one bench run
===================================

``python -m matderiv bench --quick --json PATH`` times every kernel against the plain
numpy/scipy ways of computing the same thing, and memory-bound kernels against the
write-once floor (allocating the output and writing each byte once on one thread), and
writes every row as JSON: a header (versions, cpu, threads, date) and, per row, its
area, label, matderiv's time ``matderiv_s``, the floor ``floor_s`` and
``floor_ratio``, and its ``references``, each with its time and ratio. Times are in
seconds; a ratio is matderiv's time over the other (below 1: matderiv is faster).

This script does not run the bench: it reads ``examples/data/bench_quick.json``, written
by one run of

.. code-block:: bash

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m matderiv bench --quick --json examples/data/bench_quick.json

on a 2-core virtual machine (AMD EPYC) that was shared with other jobs at the time. One
thread, because with every core busy a multi-threaded BLAS call stalls and its ratio
says more about the load than about the code; single ratios can still be off by tens
of percent. Two ratios are drawn:

* matderiv time / reference time, for every reference of every row. Some references
  are yardsticks rather than other ways to the same result: "one batch_grad" for the
  functions that do more than one GEMM, "the float64 call" for float32 rows, "the same,
  aligned" for misaligned inputs, matderiv's route not taken ("matderiv forced ..."),
  the in-memory call for dask; there a ratio above 1 is the price of the extra work.
  The routes rows compare each batched function on sequences with the best plain-numpy
  route (budget: 1.05 x + 0.1 ms).
* /floor = matderiv time / the write-once floor, for the rows that have one (1 means as
  fast as writing the output once).
"""

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

path = Path(sys.argv[0]).resolve().parent / "data" / "bench_quick.json"
run = json.loads(path.read_text())
header, rows = run["header"], run["rows"]
print(f"matderiv {header['matderiv']} bench{' --quick' if header['quick'] else ''} on {header['cpu']}, "
      f"{header['usable_cores']} usable cores, {header['threads']} thread(s), {header['date']}: {len(rows)} rows")

areas = list(dict.fromkeys(row["area"] for row in rows))
ratios = {area: [ref["ratio"] for row in rows if row["area"] == area for ref in row["references"]] for area in areas}
for area, values in ratios.items():
    print(f"{area:14s} {len(values):3d} ratios, median {np.median(values):5.2f}")
floored = [row for row in rows if row["floor_ratio"] is not None]

# %%
# Every ratio of the run by area (one dot per row and reference, the bar at the median;
# left of the dashed line matderiv is faster), and matderiv's time over the write-once
# floor for the memory-bound rows.

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6.5), gridspec_kw={"width_ratios": [1, 1.2]})
jitter = np.random.default_rng(0)
for k, area in enumerate(areas):
    values = np.array(ratios[area])
    left.scatter(values, k + jitter.uniform(-0.25, 0.25, values.size), s=12, alpha=0.7)
    left.plot([np.median(values)] * 2, [k - 0.35, k + 0.35], color="black", lw=2)
left.axvline(1.0, color="gray", ls="--", lw=1)
left.set_xscale("log")
left.set_yticks(range(len(areas)), areas)
left.invert_yaxis()
left.set_xlabel("matderiv time / reference time (below 1: matderiv faster)")
left.set_title("against each reference")

right.barh(range(len(floored)), [row["floor_ratio"] for row in floored], color="tab:green")
right.axvline(1.0, color="gray", ls="--", lw=1)
right.set_yticks(range(len(floored)), [row["label"] for row in floored], fontsize=7)
right.invert_yaxis()
right.set_xlabel("/floor = matderiv time / write-once floor")
right.set_title("memory-bound rows against the floor")
fig.suptitle(f"one python -m matderiv bench --quick run, {header['threads']} thread, "
             f"{header['usable_cores']}-core shared VM ({header['date']})")
fig.tight_layout()
plt.show()
