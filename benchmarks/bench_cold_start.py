"""Cold and warm start of the command lines: how long before a user sees a result.

    python benchmarks/bench_cold_start.py [--repeats 3]

For ``python train.py --epochs 1`` (the bundled UCI table, default network) and
``python predict.py`` (scoring the same table with the model it wrote), each
repeat measures, in new processes:

* **cold**: an empty Numba cache (``NUMBA_CACHE_DIR`` a new folder), so every
  kernel the run uses is compiled: a first run, a new install, a changed kernel
  (``predict.py`` right after the cold ``train.py``, whose compile child cached
  the one-hot prediction kernel ``predict.py`` scores with, with the number of
  functions that first ``predict.py`` still compiled, 0 when it compiled
  nothing; then again on an empty cache of its own);
* **warm**: the same command again, the cache now filled;
* and, in one more warm process, where the time of a warm run goes:
  **python** (``python -c pass``), **imports** (``propensity.train`` or
  ``propensity.predict``: numpy, pandas, numba and the packages), **later
  imports** (what ``main`` imports when it first needs it: SciPy's BLAS, which
  Numba's ``np.dot`` loads anyway, threadpoolctl, matplotlib and tqdm), **first
  call - second call** (a first ``main`` minus a second one in the same
  process: loading the compiled kernels from the cache and other first-time
  costs) and **work** (the second call: reading the table, training, scoring,
  metrics, plots, writing files).

Times are wall-clock, best of ``--repeats`` (the least disturbed by other work
on the machine); the header gives the CPU, the load average before and after,
and the date. CPU times are those of the command and its child processes (a cold
``train.py`` compiles the prediction kernels in a child, ``nn_core/precompile.py``).
``NUMBA_CPU_NAME=haswell python benchmarks/bench_cold_start.py`` has Numba generate
and cache AVX2 code (as on the issue's Zen 3) on an AVX-512 machine; the header says so.

``--cold-only`` runs only the cold ``train.py --epochs 1``, ``--repeats`` times, and gives
each run's wall clock, the CPU time of the ``train.py`` process itself and of its compile
child, and the seconds ``train.py`` waited for the child: at its first prediction (for the
block kernels, ``precompile.wait``) and at its end (for the one-hot kernel,
``precompile.wait_all``). On an idle machine with two free cores the wall clock is about
the first CPU time plus the waits, so the CPU times tell what an idle run would take even
when other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import blas_kernels, cpu_name  # noqa: E402  (the header bench_train prints)

DATA = ROOT / "data" / "online_shoppers_intention.csv"

# Where a warm run's time goes: imports, later imports, main() twice.
IN_PROCESS = """
import sys, time
t0 = time.perf_counter()
from propensity.{module} import main
t1 = time.perf_counter()
import scipy.linalg.cython_blas, threadpoolctl
{later}
t2 = time.perf_counter()
argv = sys.argv[1:]
main([a.replace("@", "1") for a in argv])
t3 = time.perf_counter()
main([a.replace("@", "2") for a in argv])
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2 - (t4 - t3), t4 - t3)
"""
LATER = {"train": "import matplotlib.pyplot, tqdm, nn_core.plots", "predict": ""}
PARTS = ("imports", "later imports", "first call - second call", "work")

# train.py in this process, timing the waits for the compile child (wait, wait_all); then
# this process's CPU seconds and its children's (the compile child), written to argv[1].
SPLIT_CPU = """
import resource, runpy, sys, time
from nn_core import precompile
waited = {}
def timed(name):
    wait = getattr(precompile, name)
    def timed_wait():
        t = time.perf_counter()
        wait()
        waited[name] = waited.get(name, 0.0) + time.perf_counter() - t
    setattr(precompile, name, timed_wait)
timed("wait_all")
timed("wait")
out, sys.argv = sys.argv[1], ["train.py", *sys.argv[2:]]
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    own, child = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    with open(out, "w") as f:
        f.write(f"{own.ru_utime + own.ru_stime} {child.ru_utime + child.ru_stime} "
                f"{waited.get('wait', 0.0)} {waited.get('wait_all', 0.0)}")
"""


def timed(cmd: list[str], env: dict, cpu: dict | None = None, key: str = "") -> float:
    """Wall-clock seconds of ``cmd``; with ``cpu``, its user + system CPU seconds go to
    ``cpu[key]`` (less moved by other work on a shared machine than the wall clock)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu[key] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall


def breakdown(module: str, args: list[str], env: dict) -> dict[str, float]:
    """A warm run's time in parts (see the module docstring)."""
    r = subprocess.run(
        [sys.executable, "-c", IN_PROCESS.format(module=module, later=LATER[module]), *args],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )
    values = [float(v) for v in r.stdout.split()[-4:]]
    return {f"{module}.py {part}": v for part, v in zip(PARTS, values, strict=True)}


def measure(tmp: Path, k: int) -> dict[str, float]:
    """One repeat: cold and warm runs of train.py and predict.py, and the warm breakdown."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / f"cache{k}"), "PYTHONPATH": str(ROOT)}
    py = sys.executable
    run = tmp / f"run{k}"
    train = ["--epochs", "1", "--quiet", "--out"]
    cpu: dict[str, float] = {}
    out = {"train.py cold": timed([py, "train.py", *train, str(run)], env, cpu, "cold")}
    out["train.py cold, CPU"] = cpu["cold"]
    # Compiled functions the cold run wrote to the cache (one file per function and signature).
    out["compiled by the cold train.py"] = len(list((tmp / f"cache{k}").rglob("*.nbc")))
    out["train.py warm"] = timed([py, "train.py", *train, str(tmp / f"warm{k}")], env, cpu, "warm")
    out["train.py warm, CPU"] = cpu["warm"]
    predict = ["--model", str(run), "--input", str(DATA), "--output"]
    cached = len(list((tmp / f"cache{k}").rglob("*.nbc")))
    out["predict.py cold after train.py"] = timed(
        [py, "predict.py", *predict, str(tmp / f"p{k}.csv")], env)
    out["compiled by the first predict.py"] = (
        len(list((tmp / f"cache{k}").rglob("*.nbc"))) - cached)
    out["predict.py warm"] = timed([py, "predict.py", *predict, str(tmp / f"q{k}.csv")], env)
    own = {**env, "NUMBA_CACHE_DIR": str(tmp / f"cache{k}-predict")}
    out["predict.py cold"] = timed([py, "predict.py", *predict, str(tmp / f"r{k}.csv")], own)
    out["python"] = timed([py, "-c", "pass"], env)
    out.update(breakdown("train", [*train, str(tmp / f"work{k}-@")], env))
    out.update(breakdown("predict", [*predict, str(tmp / f"w{k}-@.csv")], env))
    return out


def cold_only(repeats: int) -> None:
    """``--cold-only``: cold ``train.py --epochs 1`` runs, CPU of the run and of its child."""
    print(f"# bench_cold_start --cold-only  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; Python {sys.version.split()[0]}; "
          f"Numba code for: {os.environ.get('NUMBA_CPU_NAME') or 'this CPU'}")
    print("\n| run | load average before | wall | CPU, train.py | CPU, compile child | "
          "waited at the first prediction | waited at the end |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / f"cache{k}"),
                   "PYTHONPATH": str(ROOT)}
            split = Path(tmp) / f"cpu{k}"
            wall = timed([sys.executable, "-c", SPLIT_CPU, str(split), "--epochs", "1",
                          "--quiet", "--output", str(Path(tmp) / f"run{k}")], env)
            own, child, first, end = (float(v) for v in split.read_text().split())
            print(f"| {k + 1} | {load} | {wall:.2f} s | {own:.2f} s | {child:.2f} s | "
                  f"{first:.2f} s | {end:.2f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold-only", action="store_true",
                    help="only cold train.py runs: wall, CPU of the run and of its child")
    args = ap.parse_args()
    if args.cold_only:
        cold_only(args.repeats)
        return
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            runs.append(measure(Path(tmp), k))
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    best = {key: min(r[key] for r in runs) for key in runs[0]}
    print(f"# bench_cold_start  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; Python {sys.version.split()[0]}")
    print(f"# BLAS: {blas_kernels()}")
    print(f"# Numba code for: {os.environ.get('NUMBA_CPU_NAME') or 'this CPU'} "
          "(NUMBA_CPU_NAME)")
    print(f"# load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
          f"best of {args.repeats}\n")
    print("| command | cold (empty cache) | warm | python | imports | later imports | "
          "first call - second call | work |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for cmd in ("train.py --epochs 1", "predict.py"):
        name = cmd.split()[0]
        parts = " | ".join(f"{best[f'{name} {part}']:.2f} s" for part in PARTS)
        print(f"| `{cmd}` | {best[f'{name} cold']:.2f} s | {best[f'{name} warm']:.2f} s | "
              f"{best['python']:.2f} s | {parts} |")
    print(f"\npredict.py right after the cold train.py: "
          f"{best['predict.py cold after train.py']:.2f} s, compiling "
          f"{max(r['compiled by the first predict.py'] for r in runs)} functions")
    print(f"train.py --epochs 1 CPU time (user + system, with its child): "
          f"cold {best['train.py cold, CPU']:.2f} s, warm {best['train.py warm, CPU']:.2f} s")
    print(f"functions compiled by the cold train.py (cache entries): "
          f"{best['compiled by the cold train.py']}")
    print("\nall runs (s):")
    for key in runs[0]:
        print(f"  {key}: " + ", ".join(f"{r[key]:.2f}" for r in runs))


if __name__ == "__main__":
    main()
