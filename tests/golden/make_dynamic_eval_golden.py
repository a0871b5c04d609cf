#!/usr/bin/env python3
"""Reference values for tests/test_dynamic_eval.cpp, computed with PyTorch.

Dynamic evaluation as src/charrnn/dynamic_eval.h states it ("RMS with global
prior", the squared-gradient statistics a running average over the segments
read so far), written out here in plain PyTorch on make_golden.py's GRU with
its formula-set weights: a fixed id sequence is read in segments, each scored
before the weights learn from it. The JSON records the options, the ids, each
segment's summed loss before its update, the static (unchanged weights) total
and the final parameters by name.

Regenerate (needs Python with torch; CI never runs this, the JSON is committed):

    /usr/bin/python3 tests/golden/make_dynamic_eval_golden.py

It writes tests/golden/golden_dynamic_eval.json next to this script.
"""

import json
import os

import torch
import torch.nn.functional as F

from make_golden import E, H, L, V, CharRNN, deterministic_fill, floats

IDS = [(3 * k * k + k + k // 4) % V for k in range(23)]  # 22 predictions: 4 segments of 5, one of 2
OPTIONS = {"learning_rate": 0.01, "decay": 0.05, "segment": 5, "epsilon": 1e-5, "rms_decay": 0.9}


def dynamic_eval(model, ids, o):
    params = list(model.parameters())
    theta0 = [p.detach().clone() for p in params]
    mean_square = [torch.zeros_like(p) for p in params]
    beta, power, state = o["rms_decay"], 1.0, None
    losses = []
    for start in range(0, len(ids) - 1, o["segment"]):
        w = min(o["segment"], len(ids) - 1 - start)
        x = torch.tensor(ids[start:start + w + 1], dtype=torch.long)
        model.zero_grad()
        logits, state_after = model(x[:w].unsqueeze(0), state)
        summed = F.cross_entropy(logits.reshape(w, V), x[1:], reduction="sum")
        (summed / w).backward()
        state = state_after.detach()
        losses.append(summed.item())
        with torch.no_grad():
            power *= beta
            rms = []
            for p, ms in zip(params, mean_square):
                ms.mul_(beta).add_((1 - beta) * p.grad * p.grad)
                rms.append((ms / (1 - power)).sqrt())
            mean_rms = sum(r.mean().item() for r in rms) / len(rms)
            for p, r, p0 in zip(params, rms, theta0):
                rate = (r / mean_rms).clamp(max=1 / o["decay"])
                p.add_(o["decay"] * rate * (p0 - p) - o["learning_rate"] * p.grad / (r + o["epsilon"]))
    return losses


def static_total(model, ids, segment):
    total, state = 0.0, None
    with torch.no_grad():
        for start in range(0, len(ids) - 1, segment):
            w = min(segment, len(ids) - 1 - start)
            x = torch.tensor(ids[start:start + w + 1], dtype=torch.long)
            logits, state = model(x[:w].unsqueeze(0), state)
            total += F.cross_entropy(logits.reshape(w, V), x[1:], reduction="sum").item()
    return total


class StatefulCharRNN(CharRNN):
    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    model = StatefulCharRNN("gru").float().eval()
    deterministic_fill(model)
    static = static_total(model, IDS, OPTIONS["segment"])
    losses = dynamic_eval(model, IDS, OPTIONS)
    record = {
        "generated_by": "tests/golden/make_dynamic_eval_golden.py, torch " + torch.__version__,
        "cell": "gru",
        "vocab_size": V,
        "embedding_dim": E,
        "hidden_size": H,
        "num_layers": L,
        "options": OPTIONS,
        "ids": IDS,
        "static_loss_sum": static,
        "segment_loss_sums": losses,
        "parameters": {name: {"shape": list(p.shape), "values": floats(p)} for name, p in model.named_parameters()},
    }
    path = os.path.join(here, "golden_dynamic_eval.json")
    with open(path, "w") as f:
        json.dump(record, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes", "static", static, "dynamic", sum(losses))


if __name__ == "__main__":
    main()
