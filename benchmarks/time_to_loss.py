#!/usr/bin/env python3
"""Time to a validation loss: trains the same config with `charrnn train` and
with the plain PyTorch reference (benchmarks/reference.py), one after the
other for the same wall-clock budget, validating every --eval-every steps
with the clock running in both, and prints when each first reached a series
of validation bits-per-character levels.

  python3 benchmarks/time_to_loss.py --config configs/default.json --seconds 60 \\
      [--device cuda] [--precision bf16] [--eval-every 250] [--charrnn build/charrnn] \\
      [--data TEXT] [--nats 1.6,1.5,1.47]

--data trains both tools on TEXT (its last 10% validates, as data.val_fraction
says); --nats lists the levels in nats per character instead of the default
bits-per-character series (1.47 nats is 2.12 bpc). charrnn's rate follows its
schedule to the end of --seconds, so a level is reached sooner in a run
whose budget ends there: time a level with the budget you mean to reach it in.

charrnn's clock also covers what it does at each validation (the sample it
prints and the checkpoint it writes), so the comparison leans its way only
through speed.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

LEVELS = [3.0, 2.8, 2.6, 2.4, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3]


def first_time_at(evals, level, to_unit):
    for e in evals:
        if to_unit(e["val_bpc"]) <= level:
            return e["elapsed_s"]
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--set", action="append", default=[], help="config overrides for both tools")
    parser.add_argument("--json", help="also write both runs' validations here")
    parser.add_argument("--data", help="the text both tools train on (data.path)")
    parser.add_argument("--nats", help="comma-separated levels in nats per character, instead of bpc")
    args = parser.parse_args()
    if args.data:
        args.set = args.set + [f"data.path={args.data}"]
    unit = "nats" if args.nats else "bpc"
    levels = [float(x) for x in args.nats.split(",")] if args.nats else LEVELS
    to_unit = (lambda bpc: bpc * math.log(2)) if args.nats else (lambda bpc: bpc)

    sets = args.set + [f"train.eval_every={args.eval_every}", "train.steps=100000000"]
    with tempfile.TemporaryDirectory() as work:
        checkpoint = os.path.join(work, "model.pt")
        command = [args.charrnn, "train", "--config", args.config]
        for s in sets + [f"train.max_seconds={args.seconds}", f"train.checkpoint={checkpoint}",
                         f"train.device={args.device}", f"train.precision={args.precision}"]:
            command += ["--set", s]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "model.metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        ours = [{"step": m["step"], "elapsed_s": m["elapsed_s"], "val_bpc": m["val_bpc"]} for m in lines if "val_bpc" in m]

    command = [sys.executable, os.path.join(here, "reference.py"), "--config", args.config, "--charrnn", args.charrnn,
               "--max-seconds",
               str(args.seconds), "--eval-every", str(args.eval_every), "--device", args.device,
               "--precision", args.precision, "--no-eval"]
    for s in sets:
        command += ["--set", s]
    reference = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    theirs = reference.get("evals", [])

    print(f"{args.config}, {args.seconds:.0f} s each, device {args.device}, {args.precision}, "
          f"validation every {args.eval_every} steps")
    for name, evals in [("charrnn", ours), ("pytorch", theirs)]:
        best = min((to_unit(e["val_bpc"]) for e in evals), default=float("nan"))
        steps = evals[-1]["step"] if evals else 0
        print(f"  {name}: {len(evals)} validations, {steps} steps validated, best {best:.4f} {unit}")
    print(f"{'val ' + unit:>9}{'charrnn s':>12}{'pytorch s':>12}{'speed-up':>10}")
    for level in levels:
        a, b = first_time_at(ours, level, to_unit), first_time_at(theirs, level, to_unit)
        if a is None and b is None:
            continue
        ratio = f"{b / a:9.2f}x" if a and b else "        -"
        fmt = lambda t: f"{t:12.1f}" if t is not None else f"{'never':>12}"
        print(f"{level:9.2f}{fmt(a)}{fmt(b)} {ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"charrnn": ours, "pytorch": theirs, "reference": reference}, f)


if __name__ == "__main__":
    main()
