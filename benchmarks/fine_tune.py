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

To choose fine-tuning settings, --variant NAME:KEY=VALUE[,KEY=VALUE...]
(repeatable) runs one fine-tuned model per variant in every round instead of
the scratch/fine-tuned pair, --eval-every N with --score best scores each
run's best checkpoint (the one a user keeps) rather than its last, and
--base-data PATH also scores every model on the base's held-out text, to
show how much of it the fine-tune forgot:

  /usr/bin/python3 benchmarks/fine_tune.py --base-config configs/default.json --base-data data/moby-dick.txt \
      --config configs/default.json --data small.txt --seconds 60 --eval-every 25 --score best \
      --variant base-rate: --variant lr-0.002:train.learning_rate=0.002,train.min_lr=0.0002
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


def train(args, command_tail, checkpoint, text, extra_sets=(), base_text=None):
    command = [args.charrnn, "train", "--config", args.config] + command_tail
    for s in ["data.val_fraction=0.1", "train.steps=100000000", f"train.eval_every={args.eval_every}"] + args.set + \
            list(extra_sets) + [f"data.path={args.data}", f"train.max_seconds={args.seconds}",
                                f"train.checkpoint={checkpoint}"]:
        command += ["--set", s]
    quality.run(command)
    with open(checkpoint[:-3] + ".metrics.jsonl") as f:
        metrics = [json.loads(line) for line in f]
    last = metrics[-1]
    scored = checkpoint[:-3] + ".best.pt" if args.score == "best" else checkpoint
    export = checkpoint[:-3] + ".ts.pt"
    quality.run([args.charrnn, "export", "--checkpoint", scored, "--out", export])
    model = torch.jit.load(export)
    result = {"steps": last["step"], "chars_per_s": last["chars_per_s"], "own_val_loss": last.get("val_loss"),
              "best_step": model.trained_steps}
    result.update(quality.score(model, model.encode(text), args.window))
    if base_text is not None:
        result["base_loss_carried"] = quality.score(model, model.encode(base_text), args.window)["loss_carried"]
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
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME:KEY=VALUE[,KEY=VALUE...]: a fine-tuned run with these overrides (repeatable)")
    parser.add_argument("--eval-every", type=int, default=1000000, help="train.eval_every of every run")
    parser.add_argument("--score", choices=["last", "best"], default="last", help="which checkpoint of a run to score")
    parser.add_argument("--base-data", help="the base's text (trained on when no --base is given); every model is "
                                            "also scored on its held-out last 10%% (forgetting)")
    args = parser.parse_args()

    text = quality.held_out_text(args.data, 0.1)
    base_text = quality.held_out_text(args.base_data, 0.1) if args.base_data else None
    variants = []
    for v in args.variant:
        name, _, sets = v.partition(":")
        variants.append((name, [s for s in sets.split(",") if s]))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        base = args.base
        if not base:
            base = os.path.join(work, "base.pt")
            quality.run([args.charrnn, "train", "--config", args.base_config, "--set",
                         f"train.max_seconds={args.base_seconds}", "--set", "train.steps=100000000",
                         "--set", f"train.checkpoint={base}"]
                        + (["--set", f"data.path={args.base_data}"] if args.base_data else []))
            base = os.path.join(work, "base.best.pt")
        base_info = json.loads(quality.run([args.charrnn, "info", "--checkpoint", base, "--json"]))
        if base_text is not None:
            export = os.path.join(work, "base.ts.pt")
            quality.run([args.charrnn, "export", "--checkpoint", base, "--out", export])
            model = torch.jit.load(export)
            base_own = quality.score(model, model.encode(base_text), args.window)["loss_carried"]
        kinds = [(name, ["--init-from", base], sets) for name, sets in variants] or \
            [("scratch", [], []), ("fine-tuned", ["--init-from", base], [])]
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else list(reversed(kinds))
            for kind, tail, sets in order:
                result = train(args, tail, os.path.join(work, f"{kind}-{r}.pt"), text, sets, base_text)
                result.update({"round": r + 1, "kind": kind})
                rows.append(result)
                print(f"round {r + 1} {kind}: {result['loss_carried']:.4f}", file=sys.stderr)

    print(f"`{shlex.join([os.path.basename(sys.executable)] + sys.argv)}`\n")
    print(f"CPU: {quality.cpu_model()}; base: {base_info['config']['data']['path']}, step {base_info['step']}, "
          f"best val loss {base_info['best_val_loss']:.4f}; {args.seconds:.0f} s of training each; "
          f"{len(text)} held-out characters; the {args.score} checkpoint of each run scored"
          + (f"; the base scores {base_own:.4f} on {args.base_data}'s held-out text (last column)" if base_text else "")
          + "\n")
    forgetting = base_text is not None
    print("| round | run | steps | scored step | chars/s | loss_chunked | loss_carried | bpc carried |"
          + (" base text, carried |" if forgetting else ""))
    print("|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if forgetting else ""))
    for r in rows:
        print(f"| {r['round']} | {r['kind']} | {r['steps']} | {r['best_step']} | {r['chars_per_s'] / 1e3:.1f}k | "
              f"{r['loss_chunked']:.4f} | {r['loss_carried']:.4f} | {r['bpc_carried']:.4f} |"
              + (f" {r['base_loss_carried']:.4f} |" if forgetting else ""))
    for kind, _, _ in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        print(f"| median | {kind} | {statistics.median(r['steps'] for r in mine):.0f} | "
              f"{statistics.median(r['best_step'] for r in mine):.0f} | "
              f"{statistics.median(r['chars_per_s'] for r in mine) / 1e3:.1f}k | "
              f"{statistics.median(r['loss_chunked'] for r in mine):.4f} | "
              f"{statistics.median(r['loss_carried'] for r in mine):.4f} | "
              f"{statistics.median(r['bpc_carried'] for r in mine):.4f} |"
              + (f" {statistics.median(r['base_loss_carried'] for r in mine):.4f} |" if forgetting else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "cpu": quality.cpu_model(), "base": base_info, "seconds": args.seconds,
                       "held_out_chars": len(text), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
