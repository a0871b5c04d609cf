#!/usr/bin/env python3
"""Interop check: charrnn's TorchScript export in plain PyTorch.

For each cell (rnn, gru, lstm, two layers) it trains a small model with the
charrnn binary on a play-like text it writes itself, exports it, loads the
export with torch.jit.load and checks:
  - forward logits against the values charrnn recorded in the export
    (check_input_ids / check_logits), and state carried across calls;
  - greedy m.generate("ROMEO:", 200, 0.0, 0, 1.0, 0) equals
    `charrnn generate --prime "ROMEO:" --length 200 --temperature 0`,
    and sampled text with a seed, top-k and top-p equals charrnn's too;
  - encode/decode round trips, including non-ASCII characters;
  - a prime as typed (a no-break space, a decomposed é) is folded into the
    model's characters as charrnn folds it, with a UserWarning, and refused
    with strict=True;
  - `charrnn generate` and `charrnn eval` give the same results from the
    export as from the checkpoint.

Usage: check_export.py CHARRNN_BINARY WORK_DIR   (run by ctest)
Prints "N passed, M failed" and exits non-zero on any failure.
"""
import json
import os
import random
import shutil
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import script_support  # noqa: E402
from script_support import charrnn, check, finish  # noqa: E402

script_support.quiet = True


def make_play(path):
    rng = random.Random(4)
    speakers = ["ROMEO:", "JULIET:", "NURSE:", "MERCUTIO:"]
    words = "thou art my love the night is fair and what light through yonder window breaks é".split()
    lines = []
    while sum(len(line) + 1 for line in lines) < 30000:
        lines.append(rng.choice(speakers))
        for _ in range(rng.randint(1, 3)):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + ".")
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def as_printed(text):
    # charrnn generate ends its output with a newline when the text has none
    return text if text.endswith("\n") else text + "\n"


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    corpus = os.path.join(work, "play.txt")
    make_play(corpus)
    for cell in ["rnn", "gru", "lstm"]:
        ckpt = os.path.join(work, f"{cell}.pt")
        export = os.path.join(work, f"{cell}.ts.pt")
        charrnn(binary, "train", "--config", os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.json"),
                "--set", f"data.path={corpus}", "--set", f"train.checkpoint={ckpt}", "--set", f"model.cell={cell}",
                "--set", "model.num_layers=2", "--set", "train.steps=30", "--set", "train.device=cpu")
        charrnn(binary, "export", "--checkpoint", ckpt, "--out", export)

        m = torch.jit.load(export)
        check(m.cell == cell, f"{cell}: cell attribute")
        with torch.no_grad():
            logits, state = m(m.check_input_ids)
            check(torch.allclose(logits, m.check_logits, rtol=0, atol=1e-5),
                  f"{cell}: forward logits match charrnn's (max diff {(logits - m.check_logits).abs().max():.3g})")
            check(len(state) == (2 if cell == "lstm" else 1), f"{cell}: state has one tensor per cell state")
            first, s1 = m(m.check_input_ids[:, :3])
            second, _ = m(m.check_input_ids[:, 3:], s1)
            check(torch.allclose(torch.cat([first, second], 1), logits, rtol=0, atol=1e-5), f"{cell}: state carries")

        ids = m.encode("ROMEO: é")
        check(m.decode(ids) == "ROMEO: é", f"{cell}: encode/decode round trip")
        check(len(ids) == 8 and len(m.vocab) == m.vocab_size, f"{cell}: one id per character")

        greedy = m.generate("ROMEO:", 200, 0.0, 0, 1.0, 0)
        cli = charrnn(binary, "generate", "--checkpoint", ckpt, "--prime", "ROMEO:", "--length", "200", "--temperature", "0")
        check(as_printed(greedy) == cli, f"{cell}: greedy generate equals charrnn generate\n  py:  {greedy!r}\n  cli: {cli!r}")
        for temperature, top_k, top_p, seed in [(0.8, 0, 1.0, 7), (1.0, 5, 0.9, 12345), (0.6, 0, 0.8, 3)]:
            sampled = m.generate("ROMEO:", 200, temperature, top_k, top_p, seed)
            cli = charrnn(binary, "generate", "--checkpoint", ckpt, "--prime", "ROMEO:", "--length", "200",
                          "--temperature", str(temperature), "--top-k", str(top_k), "--top-p", str(top_p), "--seed", str(seed))
            check(as_printed(sampled) == cli, f"{cell}: sampled generate (T={temperature}, k={top_k}, p={top_p}, seed={seed}) equals charrnn's")

        # a prime as typed or pasted (a no-break space, a decomposed é): folded
        # into the model's characters by the export as by charrnn, with a warning
        typed = "JULIET:\u00a0the night\u00a0e\u0301"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folded = m.generate(typed, 100, 0.8, 0, 1.0, 5)
        cli = charrnn(binary, "generate", "--checkpoint", ckpt, "--prime", typed, "--length", "100", "--seed", "5")
        check(as_printed(folded) == cli and folded.startswith("JULIET: the night é"),
              f"{cell}: a typed prime is folded as charrnn folds it\n  py:  {folded!r}\n  cli: {cli!r}")
        check(m.fold_prime(typed) == "JULIET: the night é", f"{cell}: fold_prime")
        check(any("never saw" in str(w.message) for w in caught), f"{cell}: the export warns about what it replaced")
        try:
            m.generate(typed, 10, 0.8, 0, 1.0, 5, True)
            check(False, f"{cell}: strict=True refuses the typed prime")
        except Exception as e:  # torch.jit.Error
            check("never saw" in str(e), f"{cell}: strict=True refuses the typed prime: {e}")

        from_export = charrnn(binary, "generate", "--checkpoint", export, "--prime", "JULIET:", "--length", "100", "--seed", "9")
        from_ckpt = charrnn(binary, "generate", "--checkpoint", ckpt, "--prime", "JULIET:", "--length", "100", "--seed", "9")
        check(from_export == from_ckpt, f"{cell}: charrnn generate reads the export")
        eval_export = json.loads(charrnn(binary, "eval", "--checkpoint", export, "--data", corpus, "--json"))
        eval_ckpt = json.loads(charrnn(binary, "eval", "--checkpoint", ckpt, "--data", corpus, "--json"))
        check(abs(eval_export["loss"] - eval_ckpt["loss"]) < 1e-9, f"{cell}: charrnn eval reads the export")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
