#!/usr/bin/env python3
"""src/charrnn/export_module.py, the TorchScript program of charrnn's export,
checked in Python without charrnn.

The file is compiled as export_torchscript() compiles it: the text after its
marker line, define()d on a module that holds the attributes export.cpp
registers, with `torch` naming ATen's operators (as the C++ define() has it),
for every cell with one and two layers and small seeded weights. Then:
  - forward() against torch.nn.LSTM / GRU / RNN with the same weights, and
    the state it returns, carried into a second call;
  - the step decoder (_decoder_weights, _step), one character at a time,
    against forward(): a wrong layout or cell step fails here;
  - _rng_seed / _rng_next against the values test_sampler.cpp pins for
    charrnn's SampleRng and against xorshift128 written out in Python;
  - _sample: greedy, top-k and top-p keep the right characters, and its
    draws follow sampler.h's recipe written out in Python;
  - encode / decode, _fold and fold_prime with a small fold table, and
    generate(): greedy text against forward(), its argument checks.
check_export.py then compares real exports with `charrnn generate`.

Usage: check_export_module.py EXPORT_MODULE_PY MARKER   (run by ctest; the
marker is CMakeLists.txt's CHARRNN_EXPORT_MODULE_MARKER)
Prints "N passed, M failed" and exits non-zero on any failure.
"""
import itertools
import os
import sys
from typing import Dict, List

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import script_support  # noqa: E402
from script_support import check, finish  # noqa: E402

script_support.quiet = True


def embedded_text(path, marker):
    """What cmake/embed_text.cmake embeds: the text after the marker's line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    at = text.index(marker)
    return text[text.index("\n", at) + 1:]


VOCAB = ["\n", " ", "a", "b", "c", "é", "“", "”"]
E, H, V = 4, 6, len(VOCAB)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
# cell.h's facts, as export.cpp registers them
STATE_TENSORS = {"rnn": 1, "gru": 1, "lstm": 2}
DECODER_IH = {"rnn": [0], "gru": [0, 1, 2, -1], "lstm": [0, 1, 3, 2]}
DECODER_HH = {"rnn": [0], "gru": [0, 1, -1, 2], "lstm": [0, 1, 3, 2]}


class Export(torch.nn.Module):
    """The attributes export_torchscript() registers, with the same names and types."""
    cell: str
    vocab_size: int
    embedding_dim: int
    hidden_size: int
    num_layers: int
    state_tensors: int
    decoder_ih_blocks: List[int]
    decoder_hh_blocks: List[int]
    vocab: List[str]
    counts: List[int]
    char_to_id: Dict[str, int]
    fold_sequences: Dict[str, str]
    fold_single: Dict[str, str]
    fold_after_opening: Dict[str, str]
    fold_openers: Dict[str, int]
    fold_max_bytes: int

    def __init__(self, cell, layers):
        super().__init__()
        g = torch.Generator().manual_seed(17 + layers)

        def weight(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.7)

        self.embedding_weight = weight(V, E)
        self.rnn_names = []
        for l in range(layers):
            n_in = E if l == 0 else H
            for name, shape in [("weight_ih", (GATES[cell] * H, n_in)), ("weight_hh", (GATES[cell] * H, H)),
                                ("bias_ih", (GATES[cell] * H,)), ("bias_hh", (GATES[cell] * H,))]:
                setattr(self, f"rnn_{name}_l{l}", weight(*shape))
                self.rnn_names.append(f"rnn_{name}_l{l}")
        self.head_weight = weight(V, H)
        self.head_bias = weight(V)
        self.cell = cell
        self.vocab_size = V
        self.embedding_dim = E
        self.hidden_size = H
        self.num_layers = layers
        self.state_tensors = STATE_TENSORS[cell]
        self.decoder_ih_blocks = DECODER_IH[cell]
        self.decoder_hh_blocks = DECODER_HH[cell]
        self.vocab = VOCAB
        self.counts = [5, 20, 9, 3, 3, 1, 2, 2]
        self.char_to_id = {c: i for i, c in enumerate(VOCAB)}
        self.fold_sequences = {"e\u0301": "é"}  # a decomposed é
        self.fold_single = {'"': "”", "\u00a0": " "}
        self.fold_after_opening = {'"': "“"}
        self.fold_openers = {" ": 1, "\n": 1}
        self.fold_max_bytes = len("e\u0301".encode())


serial = itertools.count()

# Helpers compiled beside the module's methods: a List[int] passed in from
# Python is a copy, so the random state must stay inside TorchScript.
TEST_HELPERS = """
def _test_draws(self, seed: int, n: int) -> List[int]:
    s = self._rng_seed(seed)
    out: List[int] = []
    for i in range(n):
        out.append(self._rng_next(s))
    return out

def _test_samples(self, logits: Tensor, temperature: float, top_k: int, top_p: float, seed: int, n: int) -> List[int]:
    s = self._rng_seed(seed)
    out: List[int] = []
    for i in range(n):
        out.append(self._sample(logits, temperature, top_k, top_p, s))
    return out
"""


def compile_export(source, cell, layers):
    # a class per model: torch.jit.script shares one TorchScript class
    # between modules of a class whose attributes have the same types, and
    # a method cannot be defined twice on one class
    eager = type(f"Export_{cell}_{layers}_{next(serial)}", (Export,), {})(cell, layers)
    m = torch.jit.script(eager)
    # export.cpp's one generated method (recurrent_params_source)
    params = "def _recurrent_params(self) -> List[Tensor]:\n    return [" + \
        ", ".join("self." + n for n in eager.rnn_names) + "]\n\n"
    # define() in C++ resolves `torch` to ATen's operators and nothing else
    m._c._define(m._concrete_type, params + source + TEST_HELPERS, {"torch": torch.ops.aten}.get)
    return eager, m


def reference_forward(eager, ids, state=None):
    cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[eager.cell]
    rnn = cls(E, H, num_layers=eager.num_layers, batch_first=True)
    with torch.no_grad():
        for name in eager.rnn_names:
            getattr(rnn, name[len("rnn_"):]).copy_(getattr(eager, name))
        x = torch.embedding(eager.embedding_weight, ids)
        if eager.cell == "lstm":
            out, (h, c) = rnn(x, None if state is None else (state[0], state[1]))
            new_state = [h, c]
        else:
            out, h = rnn(x, None if state is None else state[0])
            new_state = [h]
        return torch.nn.functional.linear(out, eager.head_weight, eager.head_bias), new_state


class XorShift:
    """charrnn's SampleRng (sampler.cpp) in plain Python."""

    def __init__(self, seed):
        m = 0xFFFFFFFF
        self.s = [seed & m, (seed >> 32) & m, 0x243F6A88, 0xB7E15162]
        for _ in range(32):
            self.next()

    def next(self):
        m = 0xFFFFFFFF
        x, y, z, w = self.s
        t = (x ^ (x << 11)) & m
        nw = (w ^ (w >> 19) ^ t ^ (t >> 8)) & m
        self.s = [y, z, w, nw]
        return nw


def reference_sample(logits, temperature, top_k, top_p, rng):
    """sampler.h: softmax(logits / T) over the top_k most likely, cut to the
    smallest head holding top_p of that mass, drawn by inverse CDF."""
    probs = torch.softmax(logits.float() / temperature, -1)[0].tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])  # stable: ties keep id order
    if 0 < top_k < len(order):
        order = order[:top_k]
    cdf, total = [], 0.0
    for i in order:  # float32 probabilities summed in double
        total += probs[i]
        cdf.append(total)
    kept = len(order)
    if top_p < 1.0:
        kept = 1 + sum(1 for c in cdf[:-1] if c < top_p * cdf[-1])
    target = (rng.next() >> 8) / 16777216.0 * cdf[kept - 1]
    position = min(sum(1 for c in cdf[:kept] if c <= target), kept - 1)
    return order[position]


def check_model(source, cell, layers):
    what = f"{cell}, {layers} layer(s)"
    eager, m = compile_export(source, cell, layers)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(V, (2, 7), generator=g)
    with torch.no_grad():
        logits, state = m(ids)
        expected, expected_state = reference_forward(eager, ids)
        check(torch.equal(logits, expected), f"{what}: forward() equals torch.nn's {cell}")
        check(len(state) == STATE_TENSORS[cell] and all(torch.equal(a, b) for a, b in zip(state, expected_state)),
              f"{what}: forward() returns the state torch.nn does")
        first, s1 = m(ids[:, :3])
        second, _ = m(ids[:, 3:], s1)
        check(torch.allclose(torch.cat([first, second], 1), logits, rtol=0, atol=1e-6), f"{what}: state carries")

        # the step decoder, one stream, against forward() over the prefix
        ws = m._decoder_weights()
        check(len(ws) == 2 * layers, f"{what}: a matrix and a bias per layer")
        x = torch.zeros(E + layers * H)
        c = torch.zeros(layers, H)
        worst = 0.0
        row = ids[0].tolist()
        for t, token in enumerate(row):
            step = m._step(token, x, c, ws)
            full, _ = m(ids[:1, :t + 1])
            worst = max(worst, float((step - full[:, -1]).abs().max()))
        check(worst < 1e-5, f"{what}: _step() follows forward() (max diff {worst:.3g})")

        # greedy generate() against forward()'s argmax, from a prime
        prime = "ab “c"
        text = prime
        for _ in range(12):
            out, _ = m(torch.tensor([m.encode(text)]))
            text += VOCAB[int(out[0, -1].argmax())]
        check(m.generate(prime, 12, 0.0, 0, 1.0, 0) == text, f"{what}: greedy generate() follows forward()")
        unprimed = m.generate("", 10, 0.9, 3, 0.95, 4)
        check(len(m.encode(unprimed)) == 11, f"{what}: generate() with no prime draws a first character, then `length`")
        check(m.generate("ab", 0, 1.0, 0, 1.0, 1) == "ab", f"{what}: length 0 gives the prime")


def check_text_and_sampling(source):
    _, m = compile_export(source, "lstm", 1)

    # SampleRng's sequence, as test_sampler.cpp pins it
    check(m._test_draws(0, 2) == [4116387909, 3824175033], "rng: seed 0 gives SampleRng's first draws")
    check(m._test_draws(123456789012345, 1) == [680793908], "rng: a 64-bit seed uses both halves")
    for seed in [1, 7, 2 ** 40 + 3]:
        rng = XorShift(seed)
        check(m._test_draws(seed, 50) == [rng.next() for _ in range(50)], f"rng: seed {seed} follows xorshift128")

    probs = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    logits = probs.log()
    check(m._test_samples(logits, 0.0, 0, 1.0, 5, 3) == [1, 1, 1], "sample: temperature 0 is greedy")
    check(m._test_samples(logits, 1.0, 1, 1.0, 5, 3) == [1, 1, 1], "sample: top_k 1 is greedy")
    top2 = m._test_samples(logits, 1.0, 2, 1.0, 9, 400)
    check(set(top2) == {1, 3}, f"sample: top_k 2 keeps the two most likely ({sorted(set(top2))})")
    nucleus = m._test_samples(logits, 1.0, 0, 0.65, 9, 400)
    check(set(nucleus) == {1, 3}, f"sample: top_p 0.65 keeps the smallest head holding it ({sorted(set(nucleus))})")
    draws = m._test_samples(logits, 1.0, 0, 1.0, 11, 4000)
    shares = [draws.count(i) / len(draws) for i in range(4)]
    check(all(abs(s - p) < 0.03 for s, p in zip(shares, probs[0].tolist())),
          f"sample: draws follow the probabilities ({shares})")
    for temperature, top_k, top_p, seed in [(1.0, 0, 1.0, 3), (0.7, 3, 0.9, 8), (1.3, 0, 0.5, 21)]:
        rng = XorShift(seed)
        expected = [reference_sample(logits, temperature, top_k, top_p, rng) for _ in range(200)]
        check(m._test_samples(logits, temperature, top_k, top_p, seed, 200) == expected,
              f"sample: T={temperature}, k={top_k}, p={top_p} follows sampler.h's recipe")

    text = "a bé\n“c”"
    check(m.decode(m.encode(text)) == text, "encode/decode round trip with multi-byte characters")
    check(m.encode("é“") == [5, 6], "encode: one id per character")
    try:
        m.encode("az")
        check(False, "encode refuses a character outside the vocabulary")
    except torch.jit.Error as e:
        check("never saw" in str(e), f"encode refuses a character outside the vocabulary: {e}")

    folded, notes = m._fold('"a" "e\u0301"\u00a0b')
    check(folded == "“a” “é” b", f"fold: quotes open after an opener or at the start, else close ({folded!r})")
    check(notes == ['" -> “', '" -> ”', '" -> “', "e\u0301 -> é", '" -> ”', "\u00a0 ->  "],
          f"fold: a note per replacement ({notes!r})")
    check(m.fold_prime("abc") == "abc", "fold: known text is unchanged")
    try:
        m.generate('"a', 1, 1.0, 0, 1.0, 1, True)
        check(False, "generate(strict=True) refuses a prime it would fold")
    except torch.jit.Error as e:
        check("never saw" in str(e), f"generate(strict=True) refuses a prime it would fold: {e}")
    for bad, why in [((-1, 1.0, 0, 1.0), "length must be >= 0"), ((5, 1.0, 0, 0.0), "top_p must be > 0")]:
        try:
            m.generate("ab", bad[0], bad[1], bad[2], bad[3], 1)
            check(False, f"generate refuses: {why}")
        except torch.jit.Error as e:
            check(why in str(e), f"generate refuses: {why} ({e})")


def main():
    source = embedded_text(sys.argv[1], sys.argv[2])
    check(source.lstrip().startswith("def "), "the embedded text starts with a definition")
    for cell in ["rnn", "gru", "lstm"]:
        for layers in [1, 2]:
            check_model(source, cell, layers)
    check_text_and_sampling(source)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
