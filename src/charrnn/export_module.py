# The methods of charrnn's TorchScript export (export.h), in TorchScript's
# subset of Python. The build embeds everything below the marker line into
# charrnn_core (cmake/embed_text.cmake), and export_torchscript() compiles it
# into every exported module with torch::jit::Module::define(), so `self` is
# that module. export.cpp registers what the methods read:
#   - the weights: embedding_weight, rnn_weight_ih_l0, ..., head_weight,
#     head_bias; _recurrent_params() (generated, see export.cpp) lists the
#     rnn_* ones in PyTorch's order for torch.lstm / gru / rnn_tanh;
#   - the sizes and the cell's facts (cell.h): cell, vocab_size,
#     embedding_dim, hidden_size, num_layers, state_tensors and the step
#     decoder's layout, decoder_ih_blocks and decoder_hh_blocks;
#   - the vocabulary (vocab, char_to_id, counts) and the prime's fold table
#     for it (fold_*, char_fold.h).
# So one text serves every model: nothing in it is filled in per model.
#
# Compiled by define(), the text has no Python resolver: `torch` is ATen's
# operator namespace (hence torch.warn, which Python's torch lacks), names
# such as RuntimeError do not exist, and errors are asserts. Numbers are
# decimal. tests/interop/check_export_module.py compiles this file the same
# way and checks its sampler, random numbers, folding and decoder.
#
# The imports are for Python tools; they sit above the marker, outside the
# embedded text, because define() accepts only function definitions.
from typing import List, Optional, Tuple  # noqa: F401

import torch
from torch import Tensor  # noqa: F401

# ---- charrnn: TorchScript from here on ----


def forward(self, input_ids: Tensor, state: Optional[List[Tensor]] = None) -> Tuple[Tensor, List[Tensor]]:
    # the recurrence runs the same ATen kernels as the C++ model, so logits
    # agree to the last bit; input_ids: (B, T), state: [h] or [h, c], (L, B, H)
    x = torch.embedding(self.embedding_weight, input_ids)  # (B, T, E)
    if state is None:
        h0 = x.new_zeros([self.num_layers, input_ids.size(0), self.hidden_size])
        hx = [h0 for _ in range(self.state_tensors)]
    else:
        hx = state
    params = self._recurrent_params()
    L = self.num_layers
    if self.cell == "lstm":
        out, h, c = torch.lstm(x, hx, params, True, L, 0.0, False, False, True)
        new_state = [h, c]
    elif self.cell == "gru":
        out, h = torch.gru(x, hx[0], params, True, L, 0.0, False, False, True)
        new_state = [h]
    else:
        out, h = torch.rnn_tanh(x, hx[0], params, True, L, 0.0, False, False, True)
        new_state = [h]
    logits = torch.linear(out, self.head_weight, self.head_bias)  # (B, T, V)
    return logits, new_state


def encode(self, text: str) -> List[int]:
    # TorchScript strings index bytes; UTF-8 is prefix-free, so the one slice
    # of 1 to 4 bytes found in the vocabulary is the next character.
    ids: List[int] = []
    i = 0
    n = len(text)
    while i < n:
        found = False
        for k in range(1, 5):
            if not found and i + k <= n:
                piece = text[i:i + k]
                if piece in self.char_to_id:
                    ids.append(self.char_to_id[piece])
                    i += k
                    found = True
        assert found, "the text holds a character the model never saw in training"
    return ids


def _fold(self, text: str) -> Tuple[str, List[str]]:
    # char_fold.h's rule, with the tables charrnn built for this vocabulary:
    # at each position the longest sequence key, else the character itself
    # when the model knows it, else its equivalent (the opening form of a
    # quote after an opener or at the start). Byte slices, as in encode();
    # a key or a vocabulary entry is always a whole character.
    pieces: List[str] = []
    notes: List[str] = []
    i = 0
    n = len(text)
    prev = ""
    while i < n:
        matched = False
        k = min(self.fold_max_bytes, n - i)
        while k >= 2 and not matched:
            piece = text[i:i + k]
            if piece in self.fold_sequences:
                to = self.fold_sequences[piece]
                pieces.append(to)
                notes.append(piece + " -> " + to)
                prev = piece[k - 1:k]
                i += k
                matched = True
            k -= 1
        for k in range(1, 5):
            if not matched and i + k <= n:
                piece = text[i:i + k]
                if piece in self.char_to_id:
                    pieces.append(piece)
                    matched = True
                elif piece in self.fold_after_opening and (prev == "" or prev in self.fold_openers):
                    pieces.append(self.fold_after_opening[piece])
                    notes.append(piece + " -> " + self.fold_after_opening[piece])
                    matched = True
                elif piece in self.fold_single:
                    pieces.append(self.fold_single[piece])
                    notes.append(piece + " -> " + self.fold_single[piece])
                    matched = True
                if matched:
                    prev = piece
                    i += k
        assert matched, "the text holds a character the model never saw in training and knows no equivalent for"
    return "".join(pieces), notes


def fold_prime(self, text: str) -> str:
    return self._fold(text)[0]


def decode(self, ids: List[int]) -> str:
    pieces: List[str] = []
    for i in ids:
        pieces.append(self.vocab[i])
    return "".join(pieces)


def _rng_next(self, s: List[int]) -> int:
    # SampleRng::next_u32 (sampler.cpp), xorshift128, in int64 arithmetic
    m = 4294967295
    x = s[0]
    t = x ^ ((x << 11) & m)
    w = s[3]
    nw = w ^ (w >> 19) ^ (t ^ (t >> 8))
    s[0] = s[1]
    s[1] = s[2]
    s[2] = w
    s[3] = nw
    return nw


def _rng_seed(self, seed: int) -> List[int]:
    m = 4294967295
    # 0x243F6A88 and 0xB7E15162, as SampleRng in sampler.cpp
    s = [seed & m, (seed >> 32) & m, 608135816, 3084996962]
    for i in range(32):
        self._rng_next(s)
    return s


def _sample(self, logits: Tensor, temperature: float, top_k: int, top_p: float, rng: List[int]) -> int:
    # sampler.h's recipe for one row; logits: (1, V)
    if temperature <= 0.0 or top_k == 1:
        return int(logits.argmax(-1)[0])
    probs = torch.softmax(logits.float() / temperature, -1)[0].cpu()
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    v = probs.size(0)
    k = v
    if top_k > 0 and top_k < v:
        k = top_k
    cdf = sorted_probs.narrow(0, 0, k).double().cumsum(0)
    kept = k
    if top_p < 1.0:
        limit = top_p * float(cdf[k - 1])
        kept = 1 + int((cdf.narrow(0, 0, k - 1) < limit).sum())
    u = float(self._rng_next(rng) >> 8) / 16777216.0  # exact: 24-bit values
    target = u * float(cdf[kept - 1])
    position = int((cdf.narrow(0, 0, kept) <= target).sum())
    if position > kept - 1:
        position = kept - 1
    return int(order[position])


def _decoder_weights(self) -> List[Tensor]:
    # StepDecoder's weights (step_decoder.cpp), per layer a matrix and a bias,
    # from the layout cell.h states: block k of both is block
    # decoder_ih_blocks[k] of w_ih beside block decoder_hh_blocks[k] of w_hh
    # (zeros for -1), with the sum of those blocks of the biases.
    H = self.hidden_size
    params = self._recurrent_params()
    ws: List[Tensor] = []
    for l in range(self.num_layers):
        w_ih = params[4 * l]
        w_hh = params[4 * l + 1]
        b_ih = params[4 * l + 2]
        b_hh = params[4 * l + 3]
        w_blocks: List[Tensor] = []
        b_blocks: List[Tensor] = []
        for k in range(len(self.decoder_ih_blocks)):
            ih = self.decoder_ih_blocks[k]
            hh = self.decoder_hh_blocks[k]
            if ih >= 0:
                from_ih = w_ih.narrow(0, ih * H, H)
            else:
                from_ih = torch.zeros([H, w_ih.size(1)], dtype=w_ih.dtype, device=w_ih.device)
            if hh >= 0:
                from_hh = w_hh.narrow(0, hh * H, H)
            else:
                from_hh = torch.zeros([H, H], dtype=w_hh.dtype, device=w_hh.device)
            w_blocks.append(torch.cat([from_ih, from_hh], 1))
            if ih < 0:
                b_blocks.append(b_hh.narrow(0, hh * H, H))
            elif hh < 0:
                b_blocks.append(b_ih.narrow(0, ih * H, H))
            else:
                b_blocks.append(b_ih.narrow(0, ih * H, H) + b_hh.narrow(0, hh * H, H))
        ws.append(torch.cat(w_blocks, 0).contiguous())
        ws.append(torch.cat(b_blocks, 0).contiguous())
    return ws


def _step(self, token: int, x: Tensor, c: Tensor, ws: List[Tensor]) -> Tensor:
    # StepDecoder's step for one stream (step_decoder.cpp), op for op: x is
    # [embedding; h_0; h_1; ...], (E + L*H), c the LSTM's cell state (L, H)
    E = self.embedding_dim
    H = self.hidden_size
    L = self.num_layers
    x.narrow(0, 0, E).copy_(self.embedding_weight[token])
    for l in range(L):
        first = 0
        width = E + H
        if l > 0:
            first = E + (l - 1) * H
            width = 2 * H
        gates = torch.addmv(ws[2 * l + 1], ws[2 * l], x.narrow(0, first, width))
        h = x.narrow(0, E + l * H, H)
        if self.cell == "lstm":  # gates (i, f, o, g)
            gates.narrow(0, 0, 3 * H).sigmoid_()
            gates.narrow(0, 3 * H, H).tanh_()
            cl = c[l]
            cl.mul_(gates.narrow(0, H, H))
            cl.addcmul_(gates.narrow(0, 0, H), gates.narrow(0, 3 * H, H))
            h.copy_(gates.narrow(0, 2 * H, H) * torch.tanh(cl))
        elif self.cell == "gru":  # gates (r, z, W_in x, W_hn h)
            gates.narrow(0, 0, 2 * H).sigmoid_()
            n = gates.narrow(0, 2 * H, H)
            n.addcmul_(gates.narrow(0, 0, H), gates.narrow(0, 3 * H, H)).tanh_()
            h.sub_(n).mul_(gates.narrow(0, H, H)).add_(n)
        else:
            h.copy_(torch.tanh(gates))
    return torch.addmv(self.head_bias, self.head_weight, x.narrow(0, E + (L - 1) * H, H)).unsqueeze(0)


def generate(self, prime: str, length: int, temperature: float, top_k: int, top_p: float, seed: int,
             strict: bool = False) -> str:
    assert length >= 0, "length must be >= 0"
    assert top_p > 0.0, "top_p must be > 0"
    if not strict:
        folded = self._fold(prime)
        prime = folded[0]
        if len(folded[1]) > 0:
            # aten::warn, a UserWarning in Python (define() knows no `warnings` module)
            torch.warn("prime: replaced characters the model never saw: " + ", ".join(folded[1]), 2)
    E = self.embedding_dim
    H = self.hidden_size
    L = self.num_layers
    rng = self._rng_seed(seed)
    pieces: List[str] = []
    ws = self._decoder_weights()
    x = torch.zeros([E + L * H], dtype=self.head_weight.dtype, device=self.head_weight.device)
    c = torch.zeros([L, H], dtype=self.head_weight.dtype, device=self.head_weight.device)
    if len(prime) == 0:
        counts = torch.tensor(self.counts).double()
        if float(counts.sum()) <= 0.0:
            counts = torch.ones_like(counts)
        first = self._sample(counts.log().float().unsqueeze(0), 1.0, 0, 1.0, rng)
        pieces.append(self.vocab[first])
        logits = self._step(first, x, c, ws)
    else:
        # forward() over the prime in chunks of 2048, as generate.cpp does
        ids = torch.tensor([self.encode(prime)]).to(self.head_weight.device)
        pieces.append(prime)
        n = ids.size(1)
        state: Optional[List[Tensor]] = None
        logits = torch.zeros([1, self.vocab_size])
        pos = 0
        while pos < n:
            out, new_state = self.forward(ids.narrow(1, pos, min(2048, n - pos)), state)
            state = new_state
            logits = out.select(1, -1)
            pos += 2048
        if state is not None:
            for l in range(L):
                x.narrow(0, E + l * H, H).copy_(state[0][l][0])
            if len(state) > 1:
                for l in range(L):
                    c[l].copy_(state[1][l][0])
    for i in range(length):
        token = self._sample(logits, temperature, top_k, top_p, rng)
        pieces.append(self.vocab[token])
        if i + 1 < length:
            logits = self._step(token, x, c, ws)
    return "".join(pieces)
