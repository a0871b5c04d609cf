#!/usr/bin/env python3
"""Plain PyTorch reference for charrnn: the same model, data sampling and
training step, written the way the common Python char-rnn scripts write it
(nn.LSTM/GRU/RNN over whole chunks, Adam, global-norm clipping).

It reads a charrnn JSON config, resolved by charrnn itself (`charrnn train
--print-config`, so the built-in defaults fill what the file leaves out), so
both tools train exactly the same thing, and prints one JSON line with its
measurements:

  /usr/bin/python3 benchmarks/reference.py --config configs/default.json \
      [--set train.steps=100] [--max-seconds 300] [--threads N] [--gen-chars 2000] \
      [--device cuda] [--precision bf16] [--eval-every 250] [--save model.ref.pt]

Validation is measured as charrnn measures it (evaluate.cpp): every held-out
character after the first predicted once, state carried across windows.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CharRNN(nn.Module):
    def __init__(self, vocab_size, cell, embedding_dim, hidden_size, num_layers, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = kind(embedding_dim, hidden_size, num_layers=num_layers,
                        dropout=dropout if num_layers > 1 else 0.0, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embedding(x), state)
        return self.head(out), state


def load_config(path, overrides, charrnn=None):
    """The config `charrnn train --config PATH --set ...` trains with: every
    key, the built-in defaults filled in, as charrnn itself resolves them."""
    binary = charrnn or os.environ.get("CHARRNN") or os.path.join(os.path.dirname(__file__), "..", "build", "charrnn")
    command = [binary, "train", "--config", path]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command + ["--print-config"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"reference.py: {' '.join(command)} --print-config failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def evaluate(model, ids, streams, window, device):
    model.eval()
    ids = ids.to(device)
    n = ids.numel() - 1
    s = max(1, min(streams, n // window))
    per = n // s
    total = 0.0
    with torch.no_grad():
        x = ids[: s * per].view(s, per)
        y = ids[1: s * per + 1].view(s, per)
        state = None
        for start in range(0, per, window):
            logits, state = model(x[:, start:start + window], state)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                     y[:, start:start + window].reshape(-1), reduction="sum").item()
        if s * per < n:
            rest = n - s * per
            last = tuple(t[:, -1:].contiguous() for t in state) if isinstance(state, tuple) else state[:, -1:].contiguous()
            xs = ids[s * per: n].view(1, rest)
            ys = ids[s * per + 1: n + 1].view(1, rest)
            for start in range(0, rest, window):
                logits, last = model(xs[:, start:start + window], last)
                total += F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                         ys[:, start:start + window].reshape(-1), reduction="sum").item()
    model.train()
    return total / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--charrnn", help="the charrnn binary that resolves the config (default: $CHARRNN, else build/charrnn)")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--max-seconds", type=float, default=None, help="overrides train.max_seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps PyTorch's default")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--gen-chars", type=int, default=0, help="also time single-stream generation")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--device", help="cpu or cuda; default: the config's train.device (auto: cuda if present)")
    parser.add_argument("--precision", choices=["fp32", "bf16"],
                        help="bf16: the forward pass and loss under torch.autocast, as charrnn's train.precision "
                             "(the default: the config's)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="> 0: validate every this many steps, the clock running, and list the results "
                             "(time to a validation loss)")
    parser.add_argument("--save", help="also write the trained model here (state_dict, chars, config), "
                                       "for benchmarks/quality.py to score")
    args = parser.parse_args()

    config = load_config(args.config, args.set, args.charrnn)
    data, m, t = config["data"], config["model"], config["train"]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device_name = args.device or t.get("device", "auto")
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    precision = args.precision or t.get("precision", "fp32")
    torch.manual_seed(t.get("seed", 42))

    with open(data["path"], encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(len(ids) * data.get("val_fraction", 0.1))
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    eval_max = t.get("eval_max_chars", 500000)
    if eval_max > 0:
        val_ids = val_ids[:eval_max]  # charrnn validates the first eval_max_chars held-out characters
    train_ids = train_ids.to(device)

    model = CharRNN(len(chars), m["cell"], m["embedding_dim"], m["hidden_size"], m["num_layers"], m.get("dropout", 0.0)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t["learning_rate"])
    B, T = t["batch_size"], t["seq_length"]
    offsets = torch.arange(T + 1, device=device)
    max_seconds = args.max_seconds if args.max_seconds is not None else t.get("max_seconds", 0)

    def step():
        starts = torch.randint(0, train_ids.numel() - T, (B, 1), device=device)
        chunk = train_ids[starts + offsets]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, _ = model(chunk[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        if t.get("grad_clip", 5.0) > 0:
            nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup_steps):
        step()
    steps, loss, evals = 0, float("nan"), []
    start = time.perf_counter()
    while steps < t["steps"]:
        if max_seconds and time.perf_counter() - start >= max_seconds:
            break
        loss = step()
        steps += 1
        if args.eval_every > 0 and steps % args.eval_every == 0 and val_ids.numel() >= 2:
            val = evaluate(model, val_ids, B, T, device)
            evals.append({"step": steps, "elapsed_s": time.perf_counter() - start, "val_bpc": val / math.log(2)})
    seconds = time.perf_counter() - start
    if args.save:  # after the clock stops, so saving costs the run nothing
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "chars": chars,
                    "config": config}, args.save)

    result = {
        "impl": "pytorch-python",
        "torch": torch.__version__,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "train_seconds": seconds,
        "train_chars_per_s": steps * B * T / seconds if seconds > 0 else 0.0,
        "train_loss": loss,
    }
    if not args.no_eval and val_ids.numel() >= 2:
        start = time.perf_counter()
        val = evaluate(model, val_ids, B, T, device)
        result["eval_chars_per_s"] = (val_ids.numel() - 1) / (time.perf_counter() - start)
        result["val_loss"] = val
        result["val_bpc"] = val / math.log(2)
    if evals:
        result["evals"] = evals
    if args.gen_chars > 0:
        # the usual Python sampling loop: one character per call, state carried
        model.eval()
        with torch.no_grad():
            x = torch.zeros(1, 1, dtype=torch.long, device=device)
            state = None
            start = time.perf_counter()
            for _ in range(args.gen_chars):
                logits, state = model(x, state)
                probs = F.softmax(logits[0, -1] / 0.8, dim=-1)
                x = torch.multinomial(probs, 1).view(1, 1)
            if device.type == "cuda":
                torch.cuda.synchronize()  # the loop only queued the last steps' kernels
            result["gen_chars_per_s"] = args.gen_chars / (time.perf_counter() - start)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
