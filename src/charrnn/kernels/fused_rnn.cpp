#include "charrnn/kernels/fused_rnn.h"

#include <cmath>
#include <cstring>

#include "charrnn/cell.h"
#include "charrnn/kernels/packed_weight.h"
#include "charrnn/kernels/vector_math.h"

namespace charrnn {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// sum[j] += row[j] for j < n
template <typename V>
CHARRNN_KERNEL_BODY void add_row(int64_t n, const float* __restrict row, float* __restrict sum) {
  const int64_t vector_end = n - n % kLanes<V>;
  for (int64_t j = 0; j < vector_end; j += kLanes<V>) storev(sum + j, loadv<V>(sum + j) + loadv<V>(row + j));
  for (int64_t j = vector_end; j < n; ++j) sum[j] += row[j];
}

// One backward time step of the LSTM: gate gradients from the saved
// activations (i, f, g, o after their nonlinearities), and dc carried to
// step t-1. dh holds dL/dh_t from step t+1; d_out, if any, adds the output's.
// db, if not null, adds up the gate gradients' rows (the bias gradient), in
// the pass that writes them rather than in a (T*B, 4H) reduction after the
// loop.
// Written on vector_math.h's vector types like the forward steps: left to
// the vectoriser, the GRU's loop below stayed scalar (its dh is read and
// written in place, which the alias analysis would not take), and took 12%
// of a GRU training step's profile.
template <typename V, bool kHasOut>
CHARRNN_KERNEL_BODY void lstm_gate_gradients_rows(int64_t B, int64_t H, const float* __restrict gp,
                                                  const float* __restrict tcp, const float* __restrict cprev,
                                                  const float* __restrict dop, const float* __restrict dhp,
                                                  float* __restrict dcp, float* __restrict dg,
                                                  float* __restrict db) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    const float* row = gp + b * 4 * H;
    float* drow = dg + b * 4 * H;
    const float* tc_row = tcp + b * H;
    const float* c_row = cprev + b * H;
    const float* dh_row = dhp + b * H;
    const float* do_row = kHasOut ? dop + b * H : nullptr;
    float* dc_row = dcp + b * H;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V i = loadv<V>(row + j), f = loadv<V>(row + H + j), g = loadv<V>(row + 2 * H + j),
              o = loadv<V>(row + 3 * H + j), tc = loadv<V>(tc_row + j);
      V dht = loadv<V>(dh_row + j);
      if constexpr (kHasOut) dht = dht + loadv<V>(do_row + j);
      const V dct = loadv<V>(dc_row + j) + dht * o * (1.0f - tc * tc);
      storev(drow + j, dct * g * i * (1.0f - i));
      storev(drow + H + j, dct * loadv<V>(c_row + j) * f * (1.0f - f));
      storev(drow + 2 * H + j, dct * i * (1.0f - g * g));
      storev(drow + 3 * H + j, dht * tc * o * (1.0f - o));
      storev(dc_row + j, dct * f);
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float i = row[j], f = row[H + j], g = row[2 * H + j], o = row[3 * H + j], tc = tc_row[j];
      const float dht = kHasOut ? dh_row[j] + do_row[j] : dh_row[j];
      const float dct = dc_row[j] + dht * o * (1.0f - tc * tc);
      drow[j] = dct * g * i * (1.0f - i);
      drow[H + j] = dct * c_row[j] * f * (1.0f - f);
      drow[2 * H + j] = dct * i * (1.0f - g * g);
      drow[3 * H + j] = dht * tc * o * (1.0f - o);
      dc_row[j] = dct * f;
    }
    if (db) add_row<V>(4 * H, drow, db);
  }
}

template <typename V>
CHARRNN_KERNEL_BODY void lstm_gate_gradients_body(int64_t B, int64_t H, const float* gp, const float* tcp,
                                                  const float* cprev, const float* dop, const float* dhp,
                                                  float* __restrict dcp, float* __restrict dg, float* __restrict db) {
  if (dop)
    lstm_gate_gradients_rows<V, true>(B, H, gp, tcp, cprev, dop, dhp, dcp, dg, db);
  else
    lstm_gate_gradients_rows<V, false>(B, H, gp, tcp, cprev, dop, dhp, dcp, dg, db);
}
CHARRNN_FOR_EACH_ISA(lstm_gate_gradients, (int64_t B, int64_t H, const float* gp, const float* tcp, const float* cprev,
                      const float* dop, const float* dhp, float* __restrict dcp, float* __restrict dg,
                      float* __restrict db), (B, H, gp, tcp, cprev, dop, dhp, dcp, dg, db))

// One backward time step of the GRU: the gradients of the input part (d_xg)
// and the recurrent part (d_hg) of the gates. dh holds dL/dh_t from step t+1
// on entry and the direct part of dL/dh_{t-1}, dh_t z, on return; the
// recurrent product adds the rest. db_hh (3H), if not null, adds up d_hg's
// rows and dn_sum (H) the n part of d_xg's (its r and z parts are d_hg's):
// the bias gradients, without (T*B, 3H) reductions after the loop.
template <typename V, bool kHasOut>
CHARRNN_KERNEL_BODY void gru_gate_gradients_rows(int64_t B, int64_t H, const float* __restrict ap,
                                                 const float* __restrict hgp, const float* __restrict hprev,
                                                 const float* __restrict dop, float* __restrict dhp,
                                                 float* __restrict dxp, float* __restrict dhgp,
                                                 float* __restrict db_hh, float* __restrict dn_sum) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    const float* a_row = ap + b * 3 * H;
    const float* hg_row = hgp + b * 3 * H;
    const float* hprev_row = hprev + b * H;
    const float* do_row = kHasOut ? dop + b * H : nullptr;
    float* dh_row = dhp + b * H;
    float* dx_row = dxp + b * 3 * H;
    float* dhg_row = dhgp + b * 3 * H;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V r = loadv<V>(a_row + j), z = loadv<V>(a_row + H + j), n = loadv<V>(a_row + 2 * H + j);
      V dht = loadv<V>(dh_row + j);
      if constexpr (kHasOut) dht = dht + loadv<V>(do_row + j);
      const V dn = dht * (1.0f - z) * (1.0f - n * n);
      const V dz = dht * (loadv<V>(hprev_row + j) - n) * z * (1.0f - z);
      const V dr = dn * loadv<V>(hg_row + 2 * H + j) * r * (1.0f - r);
      storev(dx_row + j, dr);
      storev(dx_row + H + j, dz);
      storev(dx_row + 2 * H + j, dn);
      storev(dhg_row + j, dr);
      storev(dhg_row + H + j, dz);
      storev(dhg_row + 2 * H + j, dn * r);
      storev(dh_row + j, dht * z);
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float r = a_row[j], z = a_row[H + j], n = a_row[2 * H + j];
      const float dht = kHasOut ? dh_row[j] + do_row[j] : dh_row[j];
      const float dn = dht * (1.0f - z) * (1.0f - n * n);
      const float dz = dht * (hprev_row[j] - n) * z * (1.0f - z);
      const float dr = dn * hg_row[2 * H + j] * r * (1.0f - r);
      dx_row[j] = dr;
      dx_row[H + j] = dz;
      dx_row[2 * H + j] = dn;
      dhg_row[j] = dr;
      dhg_row[H + j] = dz;
      dhg_row[2 * H + j] = dn * r;
      dh_row[j] = dht * z;
    }
    if (db_hh) {
      add_row<V>(3 * H, dhg_row, db_hh);
      add_row<V>(H, dx_row + 2 * H, dn_sum);
    }
  }
}

template <typename V>
CHARRNN_KERNEL_BODY void gru_gate_gradients_body(int64_t B, int64_t H, const float* ap, const float* hgp,
                                                 const float* hprev, const float* dop, float* dhp,
                                                 float* __restrict dxp, float* __restrict dhgp,
                                                 float* __restrict db_hh, float* __restrict dn_sum) {
  if (dop)
    gru_gate_gradients_rows<V, true>(B, H, ap, hgp, hprev, dop, dhp, dxp, dhgp, db_hh, dn_sum);
  else
    gru_gate_gradients_rows<V, false>(B, H, ap, hgp, hprev, dop, dhp, dxp, dhgp, db_hh, dn_sum);
}
CHARRNN_FOR_EACH_ISA(gru_gate_gradients, (int64_t B, int64_t H, const float* ap, const float* hgp, const float* hprev,
                      const float* dop, float* dhp, float* __restrict dxp, float* __restrict dhgp,
                      float* __restrict db_hh, float* __restrict dn_sum), (B, H, ap, hgp, hprev, dop, dhp, dxp, dhgp,
                      db_hh, dn_sum))

// One forward time step of the LSTM after the recurrent product: the gate
// nonlinearities in place (g holds the pre-activations [i|f|g|o] per row,
// and keeps the activations for backward), the new cell state, its tanh and
// the output, in one pass over the step's (B, 4H) block instead of six
// LibTorch calls, on vector_math.h's vector types.
template <typename V>
CHARRNN_KERNEL_BODY void lstm_cell_step_body(int64_t B, int64_t H, float* __restrict g, const float* __restrict c_prev,
                                             float* __restrict c_next, float* __restrict tanh_c,
                                             float* __restrict h) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    float* row = g + b * 4 * H;
    const float* cp = c_prev + b * H;
    float* cn = c_next + b * H;
    float* tc = tanh_c + b * H;
    float* hp = h + b * H;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V i = sigmoidv(loadv<V>(row + j)), f = sigmoidv(loadv<V>(row + H + j)),
              gg = tanhv(loadv<V>(row + 2 * H + j)), o = sigmoidv(loadv<V>(row + 3 * H + j));
      const V c = f * loadv<V>(cp + j) + i * gg, t = tanhv(c);
      storev(row + j, i);
      storev(row + H + j, f);
      storev(row + 2 * H + j, gg);
      storev(row + 3 * H + j, o);
      storev(cn + j, c);
      storev(tc + j, t);
      storev(hp + j, o * t);
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float i = sigmoid1(row[j]), f = sigmoid1(row[H + j]), gg = std::tanh(row[2 * H + j]),
                  o = sigmoid1(row[3 * H + j]);
      const float c = f * cp[j] + i * gg, t = std::tanh(c);
      row[j] = i;
      row[H + j] = f;
      row[2 * H + j] = gg;
      row[3 * H + j] = o;
      cn[j] = c;
      tc[j] = t;
      hp[j] = o * t;
    }
  }
}
CHARRNN_FOR_EACH_ISA(lstm_cell_step, (int64_t B, int64_t H, float* __restrict g, const float* __restrict c_prev,
                      float* __restrict c_next, float* __restrict tanh_c, float* __restrict h), (B, H, g, c_prev,
                      c_next, tanh_c, h))

// One forward time step of the GRU after the recurrent product, the same
// way: x holds the step's input part of the gates (b_ih included), hg the
// recurrent part (b_hh included); writes r, z, n after activation and h.
template <typename V>
CHARRNN_KERNEL_BODY void gru_cell_step_body(int64_t B, int64_t H, const float* __restrict x,
                                            const float* __restrict hg, const float* __restrict h_prev,
                                            float* __restrict act, float* __restrict h) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x + b * 3 * H;
    const float* hr = hg + b * 3 * H;
    const float* hp = h_prev + b * H;
    float* ar = act + b * 3 * H;
    float* out = h + b * H;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V r = sigmoidv(loadv<V>(xr + j) + loadv<V>(hr + j)),
              z = sigmoidv(loadv<V>(xr + H + j) + loadv<V>(hr + H + j)),
              n = tanhv(loadv<V>(xr + 2 * H + j) + r * loadv<V>(hr + 2 * H + j));
      storev(ar + j, r);
      storev(ar + H + j, z);
      storev(ar + 2 * H + j, n);
      storev(out + j, n + z * (loadv<V>(hp + j) - n));
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float r = sigmoid1(xr[j] + hr[j]), z = sigmoid1(xr[H + j] + hr[H + j]),
                  n = std::tanh(xr[2 * H + j] + r * hr[2 * H + j]);
      ar[j] = r;
      ar[H + j] = z;
      ar[2 * H + j] = n;
      out[j] = n + z * (hp[j] - n);
    }
  }
}
CHARRNN_FOR_EACH_ISA(gru_cell_step, (int64_t B, int64_t H, const float* __restrict x, const float* __restrict hg,
                      const float* __restrict h_prev, float* __restrict act, float* __restrict h), (B, H, x, hg,
                      h_prev, act, h))

}  // namespace


namespace {

// The input part of every time step's gates, (T*B, G*H), in one pass. Either
// x W_ih^T + bias for x (T, B, I), or, for a first layer fed by the
// embedding, rows of table = embedding W_ih^T + bias picked by the ids
// (T, B): the embedding followed by W_ih is a linear map of a one-hot, so
// its (V, G*H) products replace a (T*B, E) x (E, G*H) one in the forward and
// two in the backward (fused_rnn_embedded_layer builds the table). `ids` is
// empty for x.
struct LayerInput {
  const Tensor& x;    // (T, B, I), or the (V, G*H) table when ids is not empty
  const Tensor& ids;  // (T, B) int64, or empty
  bool from_table() const { return ids.numel() > 0; }
  int64_t steps() const { return from_table() ? ids.size(0) : x.size(0); }
  int64_t batch() const { return from_table() ? ids.size(1) : x.size(1); }

  Tensor gates(const Tensor& bias, const Tensor& w_ih) const {
    if (from_table()) return x.index_select(0, ids.reshape({-1}));
    return torch::addmm(bias, x.reshape({steps() * batch(), -1}), w_ih.t());
  }

  struct Gradients {
    Tensor x, w_ih, bias;  // the table's gradient in x, the others undefined, when from_table()
  };
  /// d_gates: (T*B, G*H), the gradient of gates()'s result; d_bias: its
  /// rows' sum, which the time loop adds up (ignored when from_table()).
  Gradients gradients(const Tensor& d_gates, const Tensor& w_ih, const Tensor& d_bias) const {
    if (from_table()) return {torch::zeros_like(x).index_add_(0, ids.reshape({-1}), d_gates), {}, {}};
    return {d_gates.mm(w_ih).view(x.sizes()), d_gates.t().mm(x.reshape({steps() * batch(), -1})), d_bias};
  }
};

// ---------------------------------------------------------------- LSTM
// gates per row: [i | f | g | o], each H wide (PyTorch's order).
struct LstmFunction : public torch::autograd::Function<LstmFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor ids, Tensor h0, Tensor c0, Tensor w_ih,
                               Tensor w_hh, Tensor b_ih, Tensor b_hh) {
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    // the input part of every step's gates at once, (T, B, 4H)
    Tensor gates = input.gates(b_ih + b_hh, w_ih).view({T, B, 4 * H});
    Tensor out = torch::empty({T, B, H}, x.options());
    Tensor c = torch::empty({T + 1, B, H}, x.options());  // c[0] = c0, c[t+1] after step t
    Tensor tanh_c = torch::empty({T, B, H}, x.options());
    c[0].copy_(c0);
    const PackedWeight w_hh_t(w_hh.t());  // (H, 4H), packed once for all T products
    const Tensor h0_rows = h0.contiguous();
    // raw pointers in the time loop: a view per step (gates[t], c[t], ...)
    // costs about a microsecond each, as much as a short tile of the product
    float* const gp = gates.data_ptr<float>();
    float* const cp = c.data_ptr<float>();
    float* const tcp = tanh_c.data_ptr<float>();
    float* const op = out.data_ptr<float>();
    const float* h_prev = h0_rows.data_ptr<float>();
    for (int64_t t = 0; t < T; ++t) {
      float* g = gp + t * B * 4 * H;  // (B, 4H)
      w_hh_t.multiply(B, h_prev, H, g, 4 * H, /*accumulate=*/true);  // the one product left in the loop
      lstm_cell_step(B, H, g, cp + t * B * H, cp + (t + 1) * B * H, tcp + t * B * H, op + t * B * H);
      h_prev = op + t * B * H;
    }
    ctx->save_for_backward({x, ids, h0, w_ih, w_hh, gates, out, c, tanh_c});
    return {out, out[T - 1].clone(), c[T].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &ids = saved[1], &h0 = saved[2], &w_ih = saved[3], &w_hh = saved[4],
                 &gates = saved[5], &out = saved[6], &c = saved[7], &tanh_c = saved[8];
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    const Tensor d_out = grads[0].defined() ? grads[0].contiguous() : Tensor();
    Tensor dh = grads[1].defined() ? grads[1].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor dc = grads[2].defined() ? grads[2].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor d_gates = torch::empty({T, B, 4 * H}, x.options());
    const PackedWeight w_hh_packed(w_hh);  // (4H, H)
    const float* const gp = gates.data_ptr<float>();
    const float* const tcp = tanh_c.data_ptr<float>();
    const float* const cp = c.data_ptr<float>();
    const float* const dop = d_out.defined() ? d_out.data_ptr<float>() : nullptr;
    float* const dhp = dh.data_ptr<float>();
    float* const dcp = dc.data_ptr<float>();
    float* const dgp = d_gates.data_ptr<float>();
    // the bias gradient, unless the table's gradient carries it
    Tensor d_bias = input.from_table() ? Tensor() : torch::zeros({4 * H}, x.options());
    float* const dbp = d_bias.defined() ? d_bias.data_ptr<float>() : nullptr;
    for (int64_t t = T - 1; t >= 0; --t) {
      float* dg = dgp + t * B * 4 * H;
      lstm_gate_gradients(B, H, gp + t * B * 4 * H, tcp + t * B * H, cp + t * B * H,
                          dop ? dop + t * B * H : nullptr, dhp, dcp, dg, dbp);
      w_hh_packed.multiply(B, dg, 4 * H, dhp, H, /*accumulate=*/false);  // (B, 4H) x (4H, H)
    }
    const LayerInput::Gradients d_input = input.gradients(d_gates.view({T * B, 4 * H}), w_ih, d_bias);
    Tensor dw_hh = d_gates[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_gates.narrow(0, 1, T - 1).reshape({(T - 1) * B, 4 * H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    return {d_input.x, Tensor(), dh, dc, d_input.w_ih, dw_hh, d_input.bias, d_input.bias};
  }
};

// ---------------------------------------------------------------- GRU
// gates per row: [r | z | n]. n = tanh(x_n + r * (h W_hn^T + b_hn)), so the
// recurrent part is kept apart from the input part.
struct GruFunction : public torch::autograd::Function<GruFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor ids, Tensor h0, Tensor w_ih, Tensor w_hh,
                               Tensor b_ih, Tensor b_hh) {
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    const Tensor xg = input.gates(b_ih, w_ih).view({T, B, 3 * H}).contiguous();  // (T, B, 3H)
    Tensor hg = torch::empty({T, B, 3 * H}, x.options());  // h_{t-1} W_hh^T + b_hh after step t
    Tensor act = torch::empty({T, B, 3 * H}, x.options());  // r, z, n after activation
    Tensor out = torch::empty({T, B, H}, x.options());
    const PackedWeight w_hh_t(w_hh.t());  // (H, 3H)
    const Tensor h0_rows = h0.contiguous();
    const float* const xp = xg.data_ptr<float>();
    float* const hgp = hg.data_ptr<float>();
    float* const ap = act.data_ptr<float>();
    float* const op = out.data_ptr<float>();
    const Tensor b_hh_row = b_hh.contiguous();
    const float* const bias = b_hh_row.data_ptr<float>();
    const float* h_prev = h0_rows.data_ptr<float>();
    for (int64_t t = 0; t < T; ++t) {
      float* hgt = hgp + t * B * 3 * H;
      // b_hh is written here, into the block the product reads next, rather
      // than into all of hg before the loop: that was a (T, B, 3H) pass
      // through memory of its own (2% of a GRU step)
      for (int64_t b = 0; b < B; ++b) std::memcpy(hgt + b * 3 * H, bias, sizeof(float) * 3 * H);
      w_hh_t.multiply(B, h_prev, H, hgt, 3 * H, /*accumulate=*/true);
      gru_cell_step(B, H, xp + t * B * 3 * H, hgt, h_prev, ap + t * B * 3 * H, op + t * B * H);
      h_prev = op + t * B * H;
    }
    ctx->save_for_backward({x, ids, h0, w_ih, w_hh, hg, act, out});
    return {out, out[T - 1].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &ids = saved[1], &h0 = saved[2], &w_ih = saved[3], &w_hh = saved[4],
                 &hg = saved[5], &act = saved[6], &out = saved[7];
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    const Tensor d_out = grads[0].defined() ? grads[0].contiguous() : Tensor();
    Tensor dh = grads[1].defined() ? grads[1].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor d_xg = torch::empty({T, B, 3 * H}, x.options());
    Tensor d_hg = torch::empty({T, B, 3 * H}, x.options());
    const PackedWeight w_hh_packed(w_hh);  // (3H, H)
    const Tensor h0_rows = h0.contiguous();
    const float* const ap = act.data_ptr<float>();
    const float* const hgp = hg.data_ptr<float>();
    const float* const op = out.data_ptr<float>();
    const float* const dop = d_out.defined() ? d_out.data_ptr<float>() : nullptr;
    float* const dhp = dh.data_ptr<float>();
    float* const dxp = d_xg.data_ptr<float>();
    float* const dhgp = d_hg.data_ptr<float>();
    Tensor db_hh = torch::zeros({3 * H}, x.options()), dn_sum = torch::zeros({H}, x.options());
    for (int64_t t = T - 1; t >= 0; --t) {
      float* dhg = dhgp + t * B * 3 * H;
      gru_gate_gradients(B, H, ap + t * B * 3 * H, hgp + t * B * 3 * H,
                         t > 0 ? op + (t - 1) * B * H : h0_rows.data_ptr<float>(), dop ? dop + t * B * H : nullptr,
                         dhp, dxp + t * B * 3 * H, dhg, db_hh.data_ptr<float>(), dn_sum.data_ptr<float>());
      w_hh_packed.multiply(B, dhg, 3 * H, dhp, H, /*accumulate=*/true);  // dh_{t-1} = dh_t z + d_hg W_hh
    }
    // d_xg's rows sum to d_hg's in r and z; n is summed apart
    const Tensor db_ih = input.from_table() ? Tensor() : torch::cat({db_hh.narrow(0, 0, 2 * H), dn_sum});
    const LayerInput::Gradients d_input = input.gradients(d_xg.view({T * B, 3 * H}), w_ih, db_ih);
    Tensor dw_hh = d_hg[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_hg.narrow(0, 1, T - 1).reshape({(T - 1) * B, 3 * H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    return {d_input.x, Tensor(), dh, d_input.w_ih, dw_hh, d_input.bias, db_hh};
  }
};

// ---------------------------------------------------------------- RNN (tanh)
struct RnnFunction : public torch::autograd::Function<RnnFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor ids, Tensor h0, Tensor w_ih, Tensor w_hh,
                               Tensor b_ih, Tensor b_hh) {
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    Tensor out = input.gates(b_ih + b_hh, w_ih).view({T, B, H});
    const PackedWeight w_hh_t(w_hh.t());  // (H, H)
    Tensor h_prev = h0.contiguous();
    for (int64_t t = 0; t < T; ++t) {
      Tensor o = out[t];
      w_hh_t.multiply(h_prev, o, /*accumulate=*/true);
      o.tanh_();
      h_prev = o;
    }
    ctx->save_for_backward({x, ids, h0, w_ih, w_hh, out});
    return {out, out[T - 1].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &ids = saved[1], &h0 = saved[2], &w_ih = saved[3], &w_hh = saved[4],
                 &out = saved[5];
    const LayerInput input{x, ids};
    const int64_t T = input.steps(), B = input.batch(), H = w_hh.size(1);
    const Tensor d_out = grads[0].defined() ? grads[0].contiguous() : Tensor();
    Tensor dh = grads[1].defined() ? grads[1].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor d_pre = torch::empty({T, B, H}, x.options());
    const PackedWeight w_hh_packed(w_hh);  // (H, H)
    for (int64_t t = T - 1; t >= 0; --t) {
      const float* hp = out[t].data_ptr<float>();
      const float* dop = d_out.defined() ? d_out[t].data_ptr<float>() : nullptr;
      const float* dhp = dh.data_ptr<float>();
      float* __restrict dp = d_pre[t].data_ptr<float>();
      for (int64_t k = 0; k < B * H; ++k) dp[k] = (dhp[k] + (dop ? dop[k] : 0.0f)) * (1.0f - hp[k] * hp[k]);
      w_hh_packed.multiply(d_pre[t], dh, /*accumulate=*/false);
    }
    const Tensor d_bias = input.from_table() ? Tensor() : d_pre.view({T * B, H}).sum(0);
    const LayerInput::Gradients d_input = input.gradients(d_pre.view({T * B, H}), w_ih, d_bias);
    Tensor dw_hh = d_pre[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_pre.narrow(0, 1, T - 1).reshape({(T - 1) * B, H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    return {d_input.x, Tensor(), dh, d_input.w_ih, dw_hh, d_input.bias, d_input.bias};
  }
};

}  // namespace

bool fused_rnn_supported(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.dim() == 3 && x.size(0) > 0;
}

namespace {

// The Functions above read each layer's gate blocks in PyTorch's order.
static_assert(kLstmFacts.gate_order == "ifgo" && kGruFacts.gate_order == "rzn" && kRnnFacts.gates == 1);

// x: (T, B, I) input, or the (V, G*H) table when ids (T, B) is not empty
FusedLayerOutput apply_layer(CellType cell, const torch::Tensor& x, const torch::Tensor& ids, const torch::Tensor& h0,
                             const torch::Tensor& c0, const torch::Tensor& w_ih, const torch::Tensor& w_hh,
                             const torch::Tensor& b_ih, const torch::Tensor& b_hh) {
  switch (cell) {
    case CellType::LSTM: {
      auto r = LstmFunction::apply(x, ids, h0, c0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], r[2]};
    }
    case CellType::GRU: {
      auto r = GruFunction::apply(x, ids, h0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], {}};
    }
    case CellType::RNN: {
      auto r = RnnFunction::apply(x, ids, h0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], {}};
    }
  }
  TORCH_CHECK(false, "unknown cell");
}

}  // namespace

FusedLayerOutput fused_rnn_layer(CellType cell, const torch::Tensor& x, const torch::Tensor& h0,
                                 const torch::Tensor& c0, const torch::Tensor& w_ih, const torch::Tensor& w_hh,
                                 const torch::Tensor& b_ih, const torch::Tensor& b_hh) {
  TORCH_CHECK(fused_rnn_supported(x), "fused RNN layers need float32 CPU input of shape (T, B, I)");
  return apply_layer(cell, x.contiguous(), torch::empty({0}, torch::kLong), h0, c0, w_ih, w_hh, b_ih, b_hh);
}

FusedLayerOutput fused_rnn_embedded_layer(CellType cell, const torch::Tensor& ids,
                                          const torch::Tensor& embedding_weight, const torch::Tensor& h0,
                                          const torch::Tensor& c0, const torch::Tensor& w_ih,
                                          const torch::Tensor& w_hh, const torch::Tensor& b_ih,
                                          const torch::Tensor& b_hh) {
  TORCH_CHECK(ids.dim() == 2 && ids.numel() > 0 && ids.scalar_type() == torch::kLong && ids.device().is_cpu(),
              "fused_rnn_embedded_layer needs (T, B) int64 CPU ids");
  TORCH_CHECK(embedding_weight.dim() == 2 && embedding_weight.device().is_cpu() &&
                  embedding_weight.scalar_type() == torch::kFloat,
              "fused_rnn_embedded_layer needs a float32 CPU embedding");
  // the GRU keeps b_hh inside its reset gate's product, the others add both
  // biases to the input part (as the Functions do with x)
  const torch::Tensor bias = cell == CellType::GRU ? b_ih : b_ih + b_hh;
  // autograd carries the table's gradient back to the embedding, W_ih and the biases
  const torch::Tensor table = torch::addmm(bias, embedding_weight, w_ih.t());  // (V, G*H)
  return apply_layer(cell, table, ids.contiguous(), h0, c0, w_ih, w_hh, b_ih, b_hh);
}

}  // namespace charrnn
