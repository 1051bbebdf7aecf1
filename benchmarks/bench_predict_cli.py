"""predict.py end to end on a large CSV, beside pandas.read_csv of the same file, in one run.

Workload (issue 14, deliver 2; issue 13, deliver 4): a CSV of the bundled format, the rows
of ``data/online_shoppers_intention.csv`` resampled (seeded) to ``--rows`` rows, written to
a temporary folder (deleted afterwards); a model trained by ``train.py --epochs 2`` on the
bundled file (or ``--model``). For each size:

* ``predict.py`` as a command, ``python predict.py --model M --input F --output O``: wall
  time, CPU time (user + system, all threads) and the child's peak resident memory
  (``ru_maxrss`` from ``os.wait4``), best of ``--repeat`` runs;
* predict.py on a one-row file of the same format: its fixed cost (interpreter, imports,
  loading the model and its compiled kernels), so that the time per row can be told apart;
* peers on the same file: ``pandas.read_csv(F)`` in this process (parsing only), and
  ``python -c "import pandas; pandas.read_csv(F)"`` as a command (the same start-up costs
  as predict.py: interpreter and imports): the fair comparison, command against command.

The package's bytecode is compiled first (``python -m compileall nn_core features
propensity``), as ``pip install`` does and as any run does when ``PYTHONDONTWRITEBYTECODE`` is
not set: the peer, pandas, is read from its installed bytecode, and in a sandbox with
``PYTHONDONTWRITEBYTECODE=1`` the checkout would otherwise be compiled from source by every
run (about 0.07 s of predict.py's start-up).

The ratios are predict.py's time over the peer's. On a busy machine wall times wait for a
CPU; the CPU-time columns (predict.py with ``--threads 1`` there, so that both run on one
core) are much less disturbed, and their ratio is printed beside the wall-time one.

Usage::

    python benchmarks/bench_predict_cli.py [--rows 1000000] [--repeat 3]
    python benchmarks/bench_predict_cli.py --rows 200000 20000000 --repeat 1 --no-pandas

The second form is the memory check: peak RSS at 20 M rows against 200 k rows (ratio
printed). Timings of a shared machine are noisy; the best of several runs is the least
disturbed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import blas_kernels, cpu_name  # noqa: E402  (after the path setup)

UCI = ROOT / "data" / "online_shoppers_intention.csv"


def isa() -> str:
    """The widest x86 vector extensions the CPU reports (from /proc/cpuinfo)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.machine()
    found = [f for f in ("avx512f", "avx2", "fma", "sse4_2") if f in flags]
    return ", ".join(found) or platform.machine()


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """The bundled rows resampled with replacement to ``rows`` rows (the header kept)."""
    lines = UCI.read_bytes().replace(b"\r\n", b"\n").splitlines()
    header, body = lines[0], np.array(lines[1:], dtype=object)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        fh.write(header + b"\n")
        for start in range(0, rows, 1_000_000):
            pick = body[rng.integers(0, len(body), min(1_000_000, rows - start))]
            fh.write(b"\n".join(pick) + b"\n")


def run_child(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB, CPU seconds: user + system)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", type=Path, help="model directory (default: train one)")
    ap.add_argument("--no-pandas", action="store_true", help="skip the read_csv peers")
    ap.add_argument("--tmp", type=Path, help="folder for the CSVs (default: $TMPDIR)")
    args = ap.parse_args()

    import pandas as pd

    print(f"# bench_predict_cli  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs, {isa()}; Python "
          f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"# BLAS: {blas_kernels()}")
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", "nn_core", "features",
                    "propensity"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print("# bytecode: compiled first (python -m compileall -q nn_core features propensity)")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = tmp / "model"
            run_child([sys.executable, "train.py", "--epochs", "2", "--quiet", "--output",
                       str(model)])
        print(f"# model: {model}; predict: python predict.py --model MODEL --input CSV "
              "--output OUT\n")
        one = tmp / "one_row.csv"
        make_csv(one, 1)
        predict = [sys.executable, "predict.py", "--model", str(model), "--output"]
        fixed = [run_child([*predict, str(tmp / "one.csv"), "--input", str(one)])
                 for _ in range(args.repeat)]
        start, start_cpu = min(r[0] for r in fixed), min(r[2] for r in fixed)
        print(f"# predict.py on a 1-row file (fixed cost): {start:.2f} s wall, "
              f"{start_cpu:.2f} s CPU\n")
        print("| rows | CSV MiB | predict.py s | rows/s | peak RSS MiB | read_csv s "
              "(in process) | ratio | ratio less the fixed cost | read_csv s (command) "
              "| ratio | CPU s: predict.py --threads 1 / command | CPU ratio |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rss = {}
        for rows in args.rows:
            csv = tmp / f"sessions_{rows}.csv"
            make_csv(csv, rows)
            cmd = [*predict, str(tmp / "scores.csv"), "--input", str(csv)]
            runs = [run_child(cmd) for _ in range(args.repeat)]
            wall = min(r[0] for r in runs)
            rss[rows] = max(r[1] for r in runs)
            cells = [f"{rows:,}", f"{csv.stat().st_size / 2**20:.0f}", f"{wall:.2f}",
                     f"{rows / wall:,.0f}", f"{rss[rows]:.0f}"]
            if args.no_pandas:
                cells += [""] * 7
            else:
                parse = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    pd.read_csv(csv)
                    parse.append(time.perf_counter() - t0)
                peer = [run_child([sys.executable, "-c", "import pandas, sys; "
                                   "pandas.read_csv(sys.argv[1])", str(csv)])
                        for _ in range(args.repeat)]
                command, command_cpu = min(r[0] for r in peer), min(r[2] for r in peer)
                cpu = min(run_child([*cmd, "--threads", "1"])[2] for _ in range(args.repeat))
                cells += [f"{min(parse):.2f}", f"{wall / min(parse):.1f}x",
                          f"{(wall - start) / min(parse):.1f}x", f"{command:.2f}",
                          f"{wall / command:.1f}x", f"{cpu:.2f} / {command_cpu:.2f}",
                          f"{cpu / command_cpu:.1f}x"]
            print("| " + " | ".join(cells) + " |", flush=True)
            csv.unlink()
            (tmp / "scores.csv").unlink(missing_ok=True)
        print(f"\n# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if len(rss) > 1:
            small, large = min(rss), max(rss)
            print(f"\npeak RSS at {large:,} rows / at {small:,} rows: "
                  f"{rss[large] / rss[small]:.3f}")


if __name__ == "__main__":
    main()
