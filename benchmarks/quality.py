#!/usr/bin/env python3
"""Quality in a time budget: trains the same config for --seconds with
`charrnn train` and then with the plain PyTorch reference
(benchmarks/reference.py), one after the other, and scores both trained
models on the held-out last 10% of the text with the same Python code here,
each through its own vocabulary:

  /usr/bin/python3 benchmarks/quality.py --config configs/default.json \\
      --data ../shared/data/tinyshakespeare.txt --seconds 300 \\
      [--set KEY=VALUE ...] [--charrnn-set KEY=VALUE ...] [--no-reference] \\
      [--charrnn build/charrnn] [--json out.json] [--window 128]

--set goes to both tools, --charrnn-set to charrnn only (keys the reference
does not have, such as train.batching). Two losses, nats per character, each
predicting every held-out character after the first exactly once:
  loss_carried  one stream, the state carried through the whole text;
  loss_chunked  consecutive --window windows, each from a zero state.

charrnn is scored from the export of its last checkpoint (model.pt, written
when the clock stops), not model.best.pt: the reference has no "best" to
pick, and with validation only at the end the two are the same file anyway.
charrnn validates once at the end, after its clock; the reference not at all
(--no-eval). Run it under `flock /tmp/cpu.lock` on a shared machine; it
takes no lock itself, since its children would then wait on it.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

from machine import cpu_model

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import reference  # noqa: E402  (its model class and config loader, so the reference is rebuilt as it trained)


def run(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"error: {shlex.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def held_out_text(path, fraction):
    # The split of charrnn's corpus.cpp (load_corpus): the file strictly
    # UTF-8-decoded into code points, a leading byte-order mark dropped,
    # n_val = (int64)(double(n) * val_fraction), the last n_val held out.
    # Python's int(n * fraction) is the same double product, truncated.
    # newline="" keeps "\r\n" as charrnn sees it. Verified on
    # tinyshakespeare: `charrnn eval` of this text written to a file gives
    # the trainer's own end-of-training val_loss to the last digit, over the
    # same count (val_chars in model.metrics.jsonl, n_val - 1), and the
    # code of score() run in eval's layout (batch_size streams) gives it bit
    # for bit.
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    return text[len(text) - int(len(text) * fraction):]


def score(model, ids, window, carry_window=1024):
    """Both losses of `model` ((B, T) ids, state or None) -> ((B, T, V) logits,
    state)) on `ids`, a list of ints. The same function for both tools; only
    their forward and vocabulary differ."""
    x = torch.tensor(ids, dtype=torch.long)
    n = x.numel() - 1  # predictions: every character after the first
    model.eval()
    with torch.no_grad():
        # carried: one stream, fed carry_window characters at a time (the
        # window size changes nothing but memory, the state is passed on)
        total, state = 0.0, None
        for start in range(0, n, carry_window):
            end = min(start + carry_window, n)
            logits, state = model(x[start:end].view(1, -1), state)  # logits: (1, W, V)
            total += F.cross_entropy(logits[0], x[start + 1:end + 1], reduction="sum").item()
        carried = total / n
        # chunked: inputs x[s:s+W] predict x[s+1:s+W+1] from a zero state, as
        # a training chunk does; full windows in batches, then the short rest
        full = n // window
        inputs = x[:full * window].view(full, window)
        targets = x[1:full * window + 1].view(full, window)
        total = 0.0
        for row in range(0, full, 256):
            logits, _ = model(inputs[row:row + 256], None)  # logits: (256, W, V)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets[row:row + 256].reshape(-1),
                                     reduction="sum").item()
        if full * window < n:
            logits, _ = model(x[full * window:n].view(1, -1), None)
            total += F.cross_entropy(logits[0], x[full * window + 1:n + 1], reduction="sum").item()
        chunked = total / n
    return {"chars": n, "loss_chunked": chunked, "loss_carried": carried, "bpc_carried": carried / math.log(2)}


def train_charrnn(args, sets, text, work):
    checkpoint = os.path.join(work, "model.pt")
    command = [args.charrnn, "train", "--config", args.config]
    # eval_every so large that it validates only once, at the end, after its clock
    for s in sets + args.charrnn_set + ["train.eval_every=1000000", f"train.checkpoint={checkpoint}"]:
        command += ["--set", s]
    run(command)
    with open(os.path.join(work, "model.metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]  # the one validation, when the clock stopped
    export = os.path.join(work, "model.ts.pt")
    run([args.charrnn, "export", "--checkpoint", checkpoint, "--out", export])
    model = torch.jit.load(export)
    result = {"tool": "charrnn", "steps": last["step"], "train_seconds": last["elapsed_s"],
              "chars_per_s": last["chars_per_s"], "train_loss": last["train_loss"],
              # charrnn's own evaluate: batch_size streams, seq_length windows
              "own_val_loss": last.get("val_loss")}
    result.update(score(model, model.encode(text), args.window))
    return result


def charrnn_blas_core(args):
    # the OpenBLAS core charrnn runs on (it may have named a better one than
    # OpenBLAS picked, runtime.h), so that the reference gets the same kernels
    for line in run([args.charrnn, "version"]).splitlines():
        if line.startswith("blas: OpenBLAS "):
            return line.split()[-1]
    return None


def train_reference(args, sets, text, work):
    saved = os.path.join(work, "model.ref.pt")
    command = [sys.executable, os.path.join(here, "reference.py"), "--config", args.config, "--charrnn", args.charrnn,
               "--max-seconds", str(args.seconds), "--no-eval", "--save", saved]
    for s in sets:
        command += ["--set", s]
    core = os.environ.get("OPENBLAS_CORETYPE") or charrnn_blas_core(args)
    env = dict(os.environ, **({"OPENBLAS_CORETYPE": core} if core else {}))
    measured = json.loads(run(command, env))
    blob = torch.load(saved)
    m = blob["config"]["model"]
    model = reference.CharRNN(len(blob["chars"]), m["cell"], m["embedding_dim"], m["hidden_size"], m["num_layers"],
                              m.get("dropout", 0.0))
    model.load_state_dict(blob["state_dict"])
    index = {c: i for i, c in enumerate(blob["chars"])}
    result = {"tool": "pytorch", "steps": measured["steps"], "train_seconds": measured["train_seconds"],
              "chars_per_s": measured["train_chars_per_s"], "train_loss": measured["train_loss"]}
    result.update(score(model, [index[c] for c in text], args.window))
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="UTF-8 text; the last 10%% is held out")
    parser.add_argument("--seconds", type=float, default=300, help="training budget of each tool")
    parser.add_argument("--set", action="append", default=[], help="config overrides for both tools")
    parser.add_argument("--charrnn-set", action="append", default=[], help="config overrides for charrnn only")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--charrnn", default=os.path.join(here, "..", "build", "charrnn"))
    parser.add_argument("--json", help="also write all figures here")
    parser.add_argument("--window", type=int, default=128, help="window of loss_chunked")
    args = parser.parse_args()

    # --data and --seconds win over --set; the clock, not the step count, ends both runs
    sets = ["data.val_fraction=0.1", "train.steps=100000000"] + args.set + [
        f"data.path={args.data}", f"train.max_seconds={args.seconds}"]
    fraction = reference.load_config(args.config, sets, args.charrnn)["data"]["val_fraction"]
    text = held_out_text(args.data, fraction)
    with tempfile.TemporaryDirectory() as work:
        results = [train_charrnn(args, sets, text, work)]
        if not args.no_reference:
            results.append(train_reference(args, sets, text, work))

    print(f"`{shlex.join([os.path.basename(sys.executable)] + sys.argv)}`\n")
    print(f"CPU: {cpu_model()}; {args.seconds:.0f} s of training each; {len(text)} held-out characters; "
          f"loss_chunked in windows of {args.window}\n")
    print("| tool | steps | chars/s | loss_chunked | loss_carried | bpc carried |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['tool']} | {r['steps']} | {r['chars_per_s'] / 1e3:.1f}k | {r['loss_chunked']:.4f} | "
              f"{r['loss_carried']:.4f} | {r['bpc_carried']:.4f} |")
    if results[0]["own_val_loss"] is not None:
        print(f"\ncharrnn's own validation at the end (batch_size streams, seq_length windows): "
              f"{results[0]['own_val_loss']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "cpu": cpu_model(), "seconds": args.seconds, "window": args.window,
                       "held_out_chars": len(text), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
