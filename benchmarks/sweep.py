#!/usr/bin/env python3
"""A recipe sweep: trains one config with several sets of overrides for
--seconds each, on one or more texts, and prints one table. Each run is
benchmarks/quality.py's charrnn run: the first 90% of the text trained, the
last 10% scored by the same Python code (loss_carried: one stream, the state
carried; loss_chunked: --window windows from a zero state).

  /usr/bin/python3 benchmarks/sweep.py --config configs/default.json \\
      --data ../shared/data/tinyshakespeare.txt [--data data/moby-dick.txt ...] \\
      --seconds 300 --rounds 2 \\
      --variant today: \\
      --variant to-zero:train.lr_schedule=linear,train.min_lr=0 \\
      --grid train.learning_rate=0.006,0.008,0.012 --grid train.batch_size=32,64 \\
      [--set KEY=VALUE ...] [--charrnn build/charrnn] [--json out.json]

--variant NAME:KEY=VALUE[,KEY=VALUE...] names one run per round ("NAME:"
is the config as it is); --grid KEY=V1,V2,... adds the cartesian product of
all grids, each named by its values. The first variant is the baseline the
"gain" column compares with (negative: a lower loss). The machine is noisy,
so every round runs the variants in another order (rotated by one per
round, reversed every other round), and the table shows the median and
every round. Run it under `flock /tmp/cpu.lock` on a shared machine; it
takes no lock itself.
"""
import argparse
import itertools
import json
import os
import shlex
import statistics
import sys
import tempfile
import types

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import quality  # noqa: E402  (the held-out split, the training run and the scoring, shared)
from machine import cpu_model  # noqa: E402


def parse_variants(args):
    variants = []
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        if not name:
            sys.exit(f"error: --variant {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
        variants.append((name, [s for s in sets.split(",") if s]))
    grids = []
    for spec in args.grid:
        key, eq, values = spec.partition("=")
        if not eq or not values:
            sys.exit(f"error: --grid {spec!r}: expected KEY=V1,V2,...")
        grids.append([(key, v) for v in values.split(",")])
    for combination in itertools.product(*grids) if grids else []:
        name = " ".join(f"{key.split('.')[-1]}={value}" for key, value in combination)
        variants.append((name, [f"{key}={value}" for key, value in combination]))
    if not variants:
        sys.exit("error: give at least one --variant or --grid")
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        sys.exit("error: two variants have the same name")
    return variants


def round_order(count, round_index):
    order = list(range(count))
    shift = round_index % count
    order = order[shift:] + order[:shift]
    return order[::-1] if round_index % 2 else order


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", action="append", required=True, help="UTF-8 text; the last 10%% is held out")
    parser.add_argument("--seconds", type=float, default=300, help="training budget of every run")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--grid", action="append", default=[])
    parser.add_argument("--set", action="append", default=[], help="overrides for every run")
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--window", type=int, default=128, help="window of loss_chunked")
    parser.add_argument("--json", help="also write every run's figures here")
    args = parser.parse_args()
    variants = parse_variants(args)

    runs = []  # (data, variant name, round, result)
    for data in args.data:
        base_sets = ["data.val_fraction=0.1", "train.steps=100000000"] + args.set + [
            f"data.path={data}", f"train.max_seconds={args.seconds}"]
        text = quality.held_out_text(data, 0.1)
        for round_index in range(args.rounds):
            for v in round_order(len(variants), round_index):
                name, sets = variants[v]
                tool = types.SimpleNamespace(charrnn=args.charrnn, config=args.config, charrnn_set=sets,
                                             window=args.window)
                with tempfile.TemporaryDirectory() as work:
                    result = quality.train_charrnn(tool, base_sets, text, work)
                runs.append((data, name, round_index, result))
                print(f"# {os.path.basename(data)} round {round_index + 1} {name}: carried "
                      f"{result['loss_carried']:.4f}, chunked {result['loss_chunked']:.4f}, {result['steps']} steps",
                      file=sys.stderr, flush=True)

    print(f"`{shlex.join([os.path.basename(sys.executable)] + sys.argv)}`\n")
    print(f"CPU: {cpu_model()}; {args.seconds:.0f} s of training per run; {args.rounds} round(s), medians; "
          f"loss_chunked in windows of {args.window}\n")
    print("| text | variant | carried | gain | chunked | steps | chars/s | carried, every round |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for data in args.data:
        medians = {}
        for name, _ in variants:
            mine = [r for d, n, _, r in runs if d == data and n == name]
            medians[name] = {key: statistics.median(r[key] for r in mine)
                             for key in ("loss_carried", "loss_chunked", "steps", "chars_per_s")}
            medians[name]["rounds"] = [r["loss_carried"] for r in mine]
        baseline = medians[variants[0][0]]["loss_carried"]
        for name, _ in variants:
            m = medians[name]
            print(f"| {os.path.basename(data)} | {name} | {m['loss_carried']:.4f} | "
                  f"{m['loss_carried'] - baseline:+.4f} | {m['loss_chunked']:.4f} | {m['steps']:.0f} | "
                  f"{m['chars_per_s'] / 1e3:.1f}k | {', '.join(f'{x:.4f}' for x in m['rounds'])} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "cpu": cpu_model(), "seconds": args.seconds,
                       "variants": [{"name": n, "sets": s} for n, s in variants],
                       "runs": [{"data": d, "variant": n, "round": i, **r} for d, n, i, r in runs]}, f, indent=1)


if __name__ == "__main__":
    main()
