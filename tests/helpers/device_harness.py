"""Run an exported C predictor on emulated Cortex-M boards (QEMU) and measure it.

The device test (``tests/nn_core/export/test_device.py``) and the benchmark
(``benchmarks/bench_device.py``) share this module. For an export with test vectors
(``--test-vectors``, ``NAME_vectors.h``) and a board of :data:`BOARDS`:

- :func:`build` cross-compiles ``NAME.c`` with ``arm-none-eabi-gcc`` under the strict flags
  and ``-Werror``, with ``device/main.c`` (the harness), ``device/startup.c`` (vector table,
  reset handler) and ``device/mps2.ld``, linked with newlib's semihosting library
  (``--specs=rdimon.specs``); and two size images (``device/size_main.c`` with and without
  the call of ``NAME_predict``);
- :func:`run` starts ``qemu-system-arm -M BOARD -semihosting -icount shift=0`` and parses
  the harness's output: every prediction (float32 bits), the stack high-water mark of one
  call (stack painting) and the instructions per inference (SysTick, calibrated, see
  ``device/main.c``);
- :func:`model_sizes` gives the flash (``.text`` + ``.rodata``) and RAM (``.data`` +
  ``.bss``) of the model alone: the size image with the call minus the one without.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEVICE = Path(__file__).resolve().parent / "device"
STRICT = ("-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-Wdouble-promotion",
          "-Wfloat-conversion", "-Wshadow")
#: Instructions of the calibration loop in device/main.c (1,000,000 x subs + bne).
CALIBRATION_INSTRUCTIONS = 2_000_000


@dataclass(frozen=True)
class Board:
    """A QEMU machine and the compiler flags of its core."""

    machine: str
    cpu_flags: tuple[str, ...]
    what: str


BOARDS = {
    "cortex-m4f": Board("mps2-an386", ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                                       "-mfloat-abi=hard"), "Cortex-M4 with FPU (hard float)"),
    "cortex-m3": Board("mps2-an385", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
                       "Cortex-M3, no FPU (soft float)"),
}
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
INSTALL = ("apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")


def missing_tools() -> str | None:
    """Why the device harness cannot run here (a sentence naming what is missing), or None."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: {INSTALL})"
    specs = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=rdimon.specs"],
                           capture_output=True, text=True).stdout.strip()
    if not Path(specs).is_file():
        return f"newlib's rdimon.specs not found (Debian: {INSTALL})"
    return None


def _gcc(board: Board, args: list, opt: str) -> None:
    cmd = ["arm-none-eabi-gcc", *board.cpu_flags, opt, "-ffunction-sections",
           "-fdata-sections", *map(str, args)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{build.stderr}")


def _template(src: Path, dst: Path, name: str) -> Path:
    dst.write_text(src.read_text().replace("NAMEUP", name.upper()).replace("NAME", name))
    return dst


def build(src_dir: Path, name: str, board: str, opt: str = "-O2") -> dict[str, Path]:
    """Cross-compile the harness and the two size images for ``board``.

    Returns
    -------
    dict with ``harness``, ``size_with``, ``size_without``: ELF files in ``src_dir``.

    Raises
    ------
    RuntimeError
        A compiler error (with its command and message; every warning is an error).
    """
    b = BOARDS[board]
    tag = f"{name}_{board}"
    objs = {}
    for what, src, flags in (
        ("model", src_dir / f"{name}.c", STRICT),
        ("main", _template(DEVICE / "main.c", src_dir / f"device_main_{name}.c", name), STRICT),
        ("size", _template(DEVICE / "size_main.c", src_dir / f"device_size_{name}.c", name),
         STRICT),
        ("startup", DEVICE / "startup.c", ("-std=c99", "-Wall", "-Wextra", "-Werror")),
    ):
        objs[what] = src_dir / f"{tag}_{what}.o"
        _gcc(b, [*flags, "-I", src_dir, "-c", src, "-o", objs[what]], opt)
    objs["size_with"] = src_dir / f"{tag}_size_with.o"
    _gcc(b, [*STRICT, "-DWITH_MODEL", "-I", src_dir, "-c",
             src_dir / f"device_size_{name}.c", "-o", objs["size_with"]], opt)
    link = ["--specs=rdimon.specs", "-nostartfiles", "-T", DEVICE / "mps2.ld",
            "-Wl,--gc-sections"]
    elfs = {"harness": src_dir / f"{tag}.elf", "size_with": src_dir / f"{tag}_with.elf",
            "size_without": src_dir / f"{tag}_without.elf"}
    _gcc(b, [*link, objs["startup"], objs["main"], objs["model"], "-o", elfs["harness"], "-lm"],
         opt)
    _gcc(b, [*link, objs["startup"], objs["size_with"], objs["model"], "-o",
             elfs["size_with"], "-lm"], opt)
    _gcc(b, [*link, objs["startup"], objs["size"], "-o", elfs["size_without"], "-lm"], opt)
    return elfs


@dataclass
class DeviceRun:
    """What the harness printed: predictions, stack, and instructions per inference."""

    p: np.ndarray
    stack_bytes: int
    instructions_per_tick: float
    instructions: float
    ticks_model: int
    ticks_empty: int


def run(elf: Path, board: str, timeout: float = 300) -> DeviceRun:
    """Run the harness under ``qemu-system-arm -icount shift=0`` with semihosting.

    Raises
    ------
    RuntimeError
        QEMU's exit status is not 0 (99: a fault on the device) or the output is incomplete.
    """
    cmd = ["qemu-system-arm", "-M", BOARDS[board].machine, "-nographic", "-monitor", "none",
           "-serial", "none", "-semihosting-config", "enable=on,target=native",
           "-icount", "shift=0", "-kernel", str(elf)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit status {res.returncode}\n"
                           f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
    text = res.stdout
    bits = [int(b, 16) for b in re.findall(r"^p \d+ ([0-9a-f]{8})$", text, flags=re.M)]
    tick = re.search(r"^tick (\d+)$", text, flags=re.M)
    stack = re.search(r"^stack (\d+)$", text, flags=re.M)
    timing = re.search(r"^time (\d+) (\d+)$", text, flags=re.M)
    if not (tick and stack and timing and bits):
        raise RuntimeError(f"incomplete harness output:\n{text[-2000:]}")
    per_tick = CALIBRATION_INSTRUCTIONS / int(tick.group(1))
    t_model, t_empty = int(timing.group(1)), int(timing.group(2))
    return DeviceRun(
        p=np.array(bits, dtype=np.uint32).view(np.float32),
        stack_bytes=int(stack.group(1)),
        instructions_per_tick=per_tick,
        instructions=(t_model - t_empty) * per_tick / len(bits),
        ticks_model=t_model,
        ticks_empty=t_empty,
    )


def sections(elf: Path) -> dict[str, int]:
    """Section sizes of an ELF (``arm-none-eabi-size -A``)."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", out, re.M)}


def model_sizes(elfs: dict[str, Path], stack_bytes: int) -> dict[str, int]:
    """Flash and RAM of the model alone: the size image with the call minus without.

    Returns
    -------
    dict: ``text``, ``rodata``, ``data``, ``bss`` (differences), ``flash`` = text + rodata
    (+ data, whose initial values are stored in flash too), ``stack`` (the high-water
    mark), ``ram`` = data + bss + stack.
    """
    a, b = sections(elfs["size_with"]), sections(elfs["size_without"])
    d = {k: a.get(f".{k}", 0) - b.get(f".{k}", 0) for k in ("text", "rodata", "data", "bss")}
    d["flash"] = d["text"] + d["rodata"] + d["data"]
    d["stack"] = stack_bytes
    d["ram"] = d["data"] + d["bss"] + stack_bytes
    return d
