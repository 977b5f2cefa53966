"""
Benchmark ratios from one bench run
===================================

``python -m matderiv bench --quick --json PATH`` times every kernel against the plain
numpy/scipy ways of computing the same thing, and memory-bound kernels against the
write-once floor (allocating the output and writing each byte once on one thread), and
writes every row as JSON: its area, the case, matderiv's time ``ours_s``, the floor
``floor_s`` (or null) and the references' times ``refs_s``, all in seconds.

This script does not run the bench: it reads ``examples/data/bench_quick.json``, written
by one run of

.. code-block:: bash

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m matderiv bench --quick --json examples/data/bench_quick.json

on a 2-core virtual machine (AMD EPYC) that was shared with other jobs at the time. One
thread, because with every core busy a multi-threaded BLAS call stalls and its ratio
says more about the load than about the code; single ratios can still be off by tens
of percent. Two ratios are drawn:

* speedup = reference time / matderiv time, for every reference of every row (above 1:
  matderiv is faster). Some references are yardsticks rather than other ways to the same
  result: "one batch_grad" for the functions that do more than one GEMM, "the float64
  call" for float32 rows, "the same, aligned" for misaligned inputs, matderiv's route not
  taken ("matderiv forced ..."), the in-memory call for dask; there a speedup under 1 is
  the price of the extra work.
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
rows = run["rows"]
print(f"matderiv {run['version']} bench{' --quick' if run['quick'] else ''} on {run['machine']}: {len(rows)} rows")

areas = list(dict.fromkeys(row["area"] for row in rows))
speedups = {area: [ref / row["ours_s"] for row in rows if row["area"] == area for ref in row["refs_s"].values()]
            for area in areas}
for area, values in speedups.items():
    print(f"{area:14s} {len(values):3d} ratios, median speedup {np.median(values):5.2f}")
floored = [row for row in rows if row["floor_s"]]

# %%
# Every speedup of the run by area (one dot per row and reference, the bar at the median),
# and matderiv's time over the write-once floor for the memory-bound rows.

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6.5), gridspec_kw={"width_ratios": [1, 1.2]})
jitter = np.random.default_rng(0)
for k, area in enumerate(areas):
    values = np.array(speedups[area])
    left.scatter(values, k + jitter.uniform(-0.25, 0.25, values.size), s=12, alpha=0.7)
    left.plot([np.median(values)] * 2, [k - 0.35, k + 0.35], color="black", lw=2)
left.axvline(1.0, color="gray", ls="--", lw=1)
left.set_xscale("log")
left.set_yticks(range(len(areas)), areas)
left.invert_yaxis()
left.set_xlabel("speedup = reference time / matderiv time")
left.set_title("speedup against each reference")

labels = [row["case"] for row in floored]
ratios = [row["ours_s"] / row["floor_s"] for row in floored]
right.barh(range(len(floored)), ratios, color="tab:green")
right.axvline(1.0, color="gray", ls="--", lw=1)
right.set_yticks(range(len(floored)), labels, fontsize=7)
right.invert_yaxis()
right.set_xlabel("/floor = matderiv time / write-once floor")
right.set_title("memory-bound rows against the floor")
fig.suptitle("one python -m matderiv bench --quick run on one thread, 2-core shared VM")
fig.tight_layout()
plt.show()
