#!/usr/bin/env python3
"""Reference values for tests/test_model_golden.cpp, computed with PyTorch.

Builds charrnn's model in plain PyTorch (nn.Embedding -> nn.RNN(tanh) / nn.GRU /
nn.LSTM with batch_first=True, registered as `rnn` -> nn.Linear registered as
`head`), so parameter names match charrnn::CharRNN's: embedding.weight,
rnn.weight_ih_l0, ..., head.weight, head.bias. Every parameter is set from a
formula (no random numbers), a fixed batch of ids runs from the zero state, and
one small JSON per cell records the sizes, the parameters by name, the input
ids, the logits and the final state (h, and c for LSTM).

Regenerate (needs Python with torch; CI never runs this, the JSON is committed):

    /usr/bin/python3 tests/golden/make_golden.py

It writes tests/golden/golden_{rnn,gru,lstm}.json next to this script.
"""

import json
import math
import os

import torch
from torch import nn

V, E, H, L = 7, 5, 6, 2  # vocabulary, embedding, hidden, layers
INPUT_IDS = [[0, 3, 6, 2, 5], [1, 4, 1, 0, 6]]  # (B=2, T=5)


class CharRNN(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        if cell == "lstm":
            self.rnn = nn.LSTM(E, H, num_layers=L, batch_first=True)
        elif cell == "gru":
            self.rnn = nn.GRU(E, H, num_layers=L, batch_first=True)
        else:
            self.rnn = nn.RNN(E, H, num_layers=L, nonlinearity="tanh", batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, ids):
        out, state = self.rnn(self.embedding(ids))
        return self.head(out), state


def deterministic_fill(model):
    # value k of parameter number i: 0.3 * sin(0.7 * k + 1.3 * i)
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            k = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.3 * torch.sin(0.7 * k + 1.3 * i)).reshape(p.shape))


def floats(t):
    # 9 significant digits round-trip any float32 exactly
    return [float("%.9g" % v) for v in t.detach().reshape(-1).tolist()]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for cell in ("rnn", "gru", "lstm"):
        model = CharRNN(cell).float().eval()
        deterministic_fill(model)
        ids = torch.tensor(INPUT_IDS, dtype=torch.long)
        with torch.no_grad():
            logits, state = model(ids)
        h, c = state if cell == "lstm" else (state, None)
        record = {
            "generated_by": "tests/golden/make_golden.py, torch " + torch.__version__,
            "cell": cell,
            "vocab_size": V,
            "embedding_dim": E,
            "hidden_size": H,
            "num_layers": L,
            "parameters": {
                name: {"shape": list(p.shape), "values": floats(p)} for name, p in model.named_parameters()
            },
            "input_ids": INPUT_IDS,
            "logits": {"shape": list(logits.shape), "values": floats(logits)},
            "h": {"shape": list(h.shape), "values": floats(h)},
        }
        if c is not None:
            record["c"] = {"shape": list(c.shape), "values": floats(c)}
        path = os.path.join(here, "golden_%s.json" % cell)
        with open(path, "w") as f:
            json.dump(record, f, separators=(",", ":"))
            f.write("\n")
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
