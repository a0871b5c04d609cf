"""What the benchmarks print about the machine beside every figure: the CPU
model and the instruction sets charrnn's kernels choose between (lscpu)."""
import os
import subprocess


def _lscpu_field(name):
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(name + ":")), None)


def cpu_model():
    return _lscpu_field("Model name") or "unknown"


def cpu_summary():
    """"MODEL, N cores, flags avx512f avx2 fma" (those of the three it has)."""
    flags = (_lscpu_field("Flags") or "").split()
    isa = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    return f"{cpu_model()}, {os.cpu_count()} cores, flags {' '.join(isa)}"
