"""Run every asv benchmark once, in this process, so that none can rot.

asv itself starts a process per benchmark (minutes for this suite on 2 cores); this
imports asv_benchmarks/benchmarks/*.py, and for every class and parameter combination
calls setup, each time_*/peakmem_* method once, and teardown. Any exception fails the run
(exit 1) after all benchmarks were tried; NotImplementedError from setup is asv's
"skip this combination" and counts as a skip.
"""
from __future__ import annotations

import importlib
import inspect
import itertools
import sys
import time
import traceback
from pathlib import Path

root = Path(__file__).resolve().parent.parent / "asv_benchmarks"
sys.path.insert(0, str(root))
failed, ran, skipped = [], 0, 0
start = time.perf_counter()
for path in sorted((root / "benchmarks").glob("bench_*.py")):
    module = importlib.import_module(f"benchmarks.{path.stem}")
    for cls_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        methods = [m for m in dir(cls) if m.startswith(("time_", "peakmem_", "mem_", "track_"))]
        if not methods:
            continue
        params = getattr(cls, "params", [])
        combos = itertools.product(*params) if params and isinstance(params[0], (list, tuple)) else ([p] for p in params) if params else [()]
        for combo in combos:
            obj = cls()
            name = f"{path.stem}.{cls_name}{list(combo) if combo else ''}"
            try:
                if hasattr(obj, "setup"):
                    obj.setup(*combo)
            except NotImplementedError:
                skipped += 1
                continue
            except Exception:
                failed.append(f"{name}.setup")
                traceback.print_exc()
                continue
            for meth in methods:
                try:
                    getattr(obj, meth)(*combo)
                    ran += 1
                except Exception:
                    failed.append(f"{name}.{meth}")
                    traceback.print_exc()
            if hasattr(obj, "teardown"):
                obj.teardown(*combo)
print(f"asv smoke: {ran} benchmark calls ran, {skipped} combinations skipped, "
      f"{len(failed)} failed, in {time.perf_counter() - start:.1f} s")
for name in failed:
    print(f"  failed: {name}")
sys.exit(1 if failed else 0)
