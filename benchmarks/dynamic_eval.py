#!/usr/bin/env python3
"""Dynamic evaluation's settings against its gain: runs `charrnn eval
--dynamic --json` on one text for every learning rate x decay x segment of a
grid and prints one table (static loss, dynamic loss, gain, seconds).

  /usr/bin/python3 benchmarks/dynamic_eval.py --checkpoint models/default.best.pt \\
      --data data/tinyshakespeare.txt --text tail --lr 0.0003,0.001,0.003 --decay 0,0.001,0.01 --segment 50

Which text (--text):
  tail       the --tail-chars characters just before the held-out last
             --val-fraction (the split of charrnn's corpus.cpp): text the
             model trained on, where settings are chosen without looking at
             the held-out text
  held-out   the held-out last --val-fraction, to measure chosen settings once
  whole      the file as it is
  halves     the file's second half after reading its first: the eval runs
             on the whole file and on its first half (cut at a segment's
             boundary), and the table shows the second half's losses (the
             difference of the two sums), as a model primed with the first
             half and adapting on would score the rest

Each run is one process; run the script under `flock /tmp/cpu.lock` on a
shared machine.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))


def read_text(path):
    # as corpus.cpp reads a file: UTF-8, a leading byte-order mark dropped,
    # "\r\n" kept as it is
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    return text[1:] if text.startswith("\ufeff") else text


def held_out_start(text, fraction):
    # n_val = (int64)(double(n) * val_fraction), the last n_val held out
    return len(text) - int(len(text) * fraction)


def eval_dynamic(args, path, lr, decay, segment):
    command = [args.charrnn, "eval", "--checkpoint", args.checkpoint, "--data", path, "--json", "--dynamic",
               "--dynamic-lr", str(lr), "--dynamic-decay", str(decay), "--dynamic-segment", str(segment)]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    out = json.loads(result.stdout)
    out["seconds"] = seconds
    return out


def vocabulary(args):
    command = [args.charrnn, "info", "--checkpoint", args.checkpoint, "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return set(json.loads(result.stdout)["vocab"])


def first_half(text, known, segment):
    # the shortest start of `text` with k * segment + 1 known characters,
    # k * segment about half of them
    wanted = sum(c in known for c in text) // 2 // segment * segment + 1
    count = 0
    for i, c in enumerate(text):
        count += c in known
        if count == wanted:
            return text[:i + 1]
    return text


def sums(record):
    # the summed losses of a run: what the halves' difference needs
    return record["loss"] * record["chars"], record["loss_dynamic"] * record["chars"], record["chars"]


def numbers(text, kind):
    return [kind(v) for v in text.split(",") if v]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="a UTF-8 text file")
    parser.add_argument("--text", choices=["tail", "held-out", "whole", "halves"], default="tail")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the held-out share at the end of --data")
    parser.add_argument("--tail-chars", type=int, default=100000, help="--text tail: characters before the held-out")
    parser.add_argument("--lr", default="0.001", help="comma-separated learning rates")
    parser.add_argument("--decay", default="0.001", help="comma-separated decays")
    parser.add_argument("--segment", default="50", help="comma-separated segment lengths")
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--json", help="also append one JSON line per run to this file")
    args = parser.parse_args()

    text = read_text(args.data)
    work = tempfile.mkdtemp(prefix="dynamic_eval.")
    start = held_out_start(text, args.val_fraction)
    if args.text == "tail":
        part = text[max(0, start - args.tail_chars):start]
    elif args.text == "held-out":
        part = text[start:]
    else:
        part = text
    path = os.path.join(work, "text.txt")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(part)
    known = vocabulary(args) if args.text == "halves" else None
    print(f"{args.checkpoint} on {args.data} ({args.text}: {len(part)} characters)")
    print(f"{'lr':>8} {'decay':>7} {'segment':>7} {'static':>8} {'dynamic':>8} {'gain':>7} {'seconds':>7}")
    for lr, decay, segment in itertools.product(numbers(args.lr, float), numbers(args.decay, float),
                                                numbers(args.segment, int)):
        record = eval_dynamic(args, path, lr, decay, segment)
        static, dynamic = record["loss"], record["loss_dynamic"]
        if args.text == "halves":
            # the first half ends at a segment's boundary, so that its
            # updates are the whole run's first ones
            # (counted in the characters the model knows: eval skips the others)
            first = os.path.join(work, "first_half.txt")
            with open(first, "w", encoding="utf-8", newline="") as f:
                f.write(first_half(part, known, segment))
            head = eval_dynamic(args, first, lr, decay, segment)
            (s_all, d_all, n_all), (s_head, d_head, n_head) = sums(record), sums(head)
            static, dynamic = (s_all - s_head) / (n_all - n_head), (d_all - d_head) / (n_all - n_head)
            record["seconds"] += head["seconds"]
            record.update({"second_half_static": static, "second_half_dynamic": dynamic,
                           "second_half_chars": n_all - n_head})
        print(f"{lr:>8g} {decay:>7g} {segment:>7d} {static:>8.4f} {dynamic:>8.4f} {static - dynamic:>7.4f} "
              f"{record['seconds']:>7.1f}", flush=True)
        if args.json:
            record.update({"text": args.text, "text_chars": len(part)})
            with open(args.json, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
