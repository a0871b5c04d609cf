#!/usr/bin/env python3
"""Fine-tuning against training from scratch, for the same minutes: trains
(or takes) a base model on a large corpus, then trains a config on a small
corpus for --seconds twice per round, once from scratch and once with
`--init-from BASE`, the order alternating between rounds (the machine is
noisy), and scores every model on the small corpus's held-out last 10% with
benchmarks/quality.py's code (the state carried through the whole text, and
in zero-state windows):

  /usr/bin/python3 benchmarks/fine_tune.py --base-config configs/sotu.json --base-seconds 300 \\
      --config configs/songs-poems.json --data data/songs-poems.txt --seconds 120 --rounds 2 \\
      [--base models/sotu.best.pt] [--set KEY=VALUE ...] [--json out.json]

--base skips training the base. Run it under `flock /tmp/cpu.lock` on a
shared machine.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import quality  # noqa: E402  (the held-out split and the scoring, shared)


def train(args, command_tail, checkpoint, text):
    command = [args.charrnn, "train", "--config", args.config] + command_tail
    for s in ["data.val_fraction=0.1", "train.steps=100000000", "train.eval_every=1000000"] + args.set + [
            f"data.path={args.data}", f"train.max_seconds={args.seconds}", f"train.checkpoint={checkpoint}"]:
        command += ["--set", s]
    quality.run(command)
    with open(checkpoint[:-3] + ".metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    export = checkpoint[:-3] + ".ts.pt"
    quality.run([args.charrnn, "export", "--checkpoint", checkpoint, "--out", export])
    model = torch.jit.load(export)
    result = {"steps": last["step"], "chars_per_s": last["chars_per_s"], "own_val_loss": last.get("val_loss")}
    result.update(quality.score(model, model.encode(text), args.window))
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="a trained base model; without it one is trained with --base-config")
    parser.add_argument("--base-config", default=os.path.join(here, "..", "configs", "sotu.json"))
    parser.add_argument("--base-seconds", type=float, default=300)
    parser.add_argument("--config", required=True, help="the small corpus's config, for both runs")
    parser.add_argument("--data", required=True, help="the small corpus; its last 10%% is held out")
    parser.add_argument("--seconds", type=float, default=120, help="training budget of each run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="config overrides for both runs")
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--json", help="also write all figures here")
    parser.add_argument("--window", type=int, default=128, help="window of loss_chunked")
    args = parser.parse_args()

    text = quality.held_out_text(args.data, 0.1)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        base = args.base
        if not base:
            base = os.path.join(work, "base.pt")
            quality.run([args.charrnn, "train", "--config", args.base_config, "--set",
                         f"train.max_seconds={args.base_seconds}", "--set", "train.steps=100000000",
                         "--set", f"train.checkpoint={base}"])
            base = os.path.join(work, "base.best.pt")
        base_info = json.loads(quality.run([args.charrnn, "info", "--checkpoint", base, "--json"]))
        for r in range(args.rounds):
            order = ["scratch", "fine-tuned"] if r % 2 == 0 else ["fine-tuned", "scratch"]
            for kind in order:
                tail = ["--init-from", base] if kind == "fine-tuned" else []
                result = train(args, tail, os.path.join(work, f"{kind}-{r}.pt"), text)
                result.update({"round": r + 1, "kind": kind})
                rows.append(result)
                print(f"round {r + 1} {kind}: {result['loss_carried']:.4f}", file=sys.stderr)

    print(f"`{shlex.join([os.path.basename(sys.executable)] + sys.argv)}`\n")
    print(f"CPU: {quality.cpu_model()}; base: {base_info['config']['data']['path']}, step {base_info['step']}, "
          f"best val loss {base_info['best_val_loss']:.4f}; {args.seconds:.0f} s of training each; "
          f"{len(text)} held-out characters\n")
    print("| round | run | steps | chars/s | loss_chunked | loss_carried | bpc carried |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['kind']} | {r['steps']} | {r['chars_per_s'] / 1e3:.1f}k | {r['loss_chunked']:.4f} | "
              f"{r['loss_carried']:.4f} | {r['bpc_carried']:.4f} |")
    for kind in ["scratch", "fine-tuned"]:
        mine = [r for r in rows if r["kind"] == kind]
        print(f"| median | {kind} | {statistics.median(r['steps'] for r in mine):.0f} | "
              f"{statistics.median(r['chars_per_s'] for r in mine) / 1e3:.1f}k | "
              f"{statistics.median(r['loss_chunked'] for r in mine):.4f} | "
              f"{statistics.median(r['loss_carried'] for r in mine):.4f} | "
              f"{statistics.median(r['bpc_carried'] for r in mine):.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "cpu": quality.cpu_model(), "base": base_info, "seconds": args.seconds,
                       "held_out_chars": len(text), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
