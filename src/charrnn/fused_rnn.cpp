#include "charrnn/fused_rnn.h"

#include "charrnn/packed_weight.h"

namespace charrnn {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Element-wise loops run over one time step's (B, H) block. They are plain
// loops over contiguous float arrays so the compiler vectorises them; the
// transcendental functions go through ATen's vectorised kernels instead.

// ---------------------------------------------------------------- LSTM
// gates per row: [i | f | g | o], each H wide (PyTorch's order).
struct LstmFunction : public torch::autograd::Function<LstmFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh,
                               Tensor b_ih, Tensor b_hh) {
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
    // all input projections at once: (T*B, I) x (I, 4H) -> gates (T, B, 4H)
    Tensor gates = torch::addmm(b_ih + b_hh, x.reshape({T * B, -1}), w_ih.t()).view({T, B, 4 * H});
    Tensor out = torch::empty({T, B, H}, x.options());
    Tensor c = torch::empty({T + 1, B, H}, x.options());  // c[0] = c0, c[t+1] after step t
    Tensor tanh_c = torch::empty({T, B, H}, x.options());
    c[0].copy_(c0);
    const PackedWeight w_hh_t(w_hh.t());  // (H, 4H), packed once for all T products
    Tensor h_prev = h0.contiguous();
    for (int64_t t = 0; t < T; ++t) {
      Tensor g = gates[t];                         // (B, 4H)
      w_hh_t.multiply(h_prev, g, /*accumulate=*/true);  // the one product left in the loop
      g.narrow(1, 0, 2 * H).sigmoid_();  // i, f
      g.narrow(1, 2 * H, H).tanh_();     // g
      g.narrow(1, 3 * H, H).sigmoid_();  // o
      const float* gp = g.data_ptr<float>();
      const float* cp = c[t].data_ptr<float>();
      float* __restrict cn = c[t + 1].data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        const float* row = gp + b * 4 * H;
        for (int64_t j = 0; j < H; ++j) cn[b * H + j] = row[H + j] * cp[b * H + j] + row[j] * row[2 * H + j];
      }
      Tensor tc = tanh_c[t];
      torch::tanh_out(tc, c[t + 1]);
      const float* tcp = tc.data_ptr<float>();
      float* __restrict hp = out[t].data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        const float* row = gp + b * 4 * H;
        for (int64_t j = 0; j < H; ++j) hp[b * H + j] = row[3 * H + j] * tcp[b * H + j];
      }
      h_prev = out[t];
    }
    ctx->save_for_backward({x, h0, w_ih, w_hh, gates, out, c, tanh_c});
    return {out, out[T - 1].clone(), c[T].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &w_ih = saved[2], &w_hh = saved[3], &gates = saved[4],
                 &out = saved[5], &c = saved[6], &tanh_c = saved[7];
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
    const Tensor d_out = grads[0].defined() ? grads[0].contiguous() : Tensor();
    Tensor dh = grads[1].defined() ? grads[1].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor dc = grads[2].defined() ? grads[2].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor d_gates = torch::empty({T, B, 4 * H}, x.options());
    const PackedWeight w_hh_packed(w_hh);  // (4H, H)
    for (int64_t t = T - 1; t >= 0; --t) {
      const float* gp = gates[t].data_ptr<float>();
      const float* tcp = tanh_c[t].data_ptr<float>();
      const float* cprev = c[t].data_ptr<float>();
      const float* dop = d_out.defined() ? d_out[t].data_ptr<float>() : nullptr;
      const float* dhp = dh.data_ptr<float>();
      float* __restrict dcp = dc.data_ptr<float>();
      float* __restrict dg = d_gates[t].data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        const float* row = gp + b * 4 * H;
        float* drow = dg + b * 4 * H;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j;
          const float i = row[j], f = row[H + j], g = row[2 * H + j], o = row[3 * H + j], tc = tcp[k];
          const float dht = dhp[k] + (dop ? dop[k] : 0.0f);
          const float dct = dcp[k] + dht * o * (1.0f - tc * tc);
          drow[j] = dct * g * i * (1.0f - i);
          drow[H + j] = dct * cprev[k] * f * (1.0f - f);
          drow[2 * H + j] = dct * i * (1.0f - g * g);
          drow[3 * H + j] = dht * tc * o * (1.0f - o);
          dcp[k] = dct * f;
        }
      }
      w_hh_packed.multiply(d_gates[t], dh, /*accumulate=*/false);  // (B, 4H) x (4H, H)
    }
    const Tensor dg2 = d_gates.view({T * B, 4 * H});
    const Tensor dx = dg2.mm(w_ih).view(x.sizes());
    Tensor dw_hh = d_gates[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_gates.narrow(0, 1, T - 1).reshape({(T - 1) * B, 4 * H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    const Tensor dw_ih = dg2.t().mm(x.reshape({T * B, -1}));
    const Tensor db = dg2.sum(0);
    return {dx, dh, dc, dw_ih, dw_hh, db, db};
  }
};

// ---------------------------------------------------------------- GRU
// gates per row: [r | z | n]. n = tanh(x_n + r * (h W_hn^T + b_hn)), so the
// recurrent part is kept apart from the input part.
struct GruFunction : public torch::autograd::Function<GruFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor b_ih,
                               Tensor b_hh) {
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
    const Tensor xg = torch::addmm(b_ih, x.reshape({T * B, -1}), w_ih.t()).view({T, B, 3 * H});  // (T, B, 3H)
    Tensor hg = torch::empty({T, B, 3 * H}, x.options());  // h_{t-1} W_hh^T + b_hh
    Tensor act = torch::empty({T, B, 3 * H}, x.options());  // r, z, n after activation
    Tensor out = torch::empty({T, B, H}, x.options());
    const PackedWeight w_hh_t(w_hh.t());  // (H, 3H)
    Tensor h_prev = h0.contiguous();
    for (int64_t t = 0; t < T; ++t) {
      Tensor hgt = hg[t];
      hgt.copy_(b_hh.expand_as(hgt));
      w_hh_t.multiply(h_prev, hgt, /*accumulate=*/true);
      Tensor a = act[t];
      Tensor rz = a.narrow(1, 0, 2 * H);
      torch::add_out(rz, xg[t].narrow(1, 0, 2 * H), hgt.narrow(1, 0, 2 * H));
      rz.sigmoid_();
      {
        const float* ap = a.data_ptr<float>();
        const float* hp = hgt.data_ptr<float>();
        const float* xp = xg[t].data_ptr<float>();
        float* __restrict np = a.data_ptr<float>();
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < H; ++j) {
            const int64_t r = b * 3 * H + j, n = r + 2 * H;
            np[n] = xp[n] + ap[r] * hp[n];
          }
      }
      a.narrow(1, 2 * H, H).tanh_();
      const float* ap = a.data_ptr<float>();
      const float* hprev = h_prev.data_ptr<float>();
      float* __restrict op = out[t].data_ptr<float>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          const float z = ap[b * 3 * H + H + j], n = ap[b * 3 * H + 2 * H + j];
          op[b * H + j] = n + z * (hprev[b * H + j] - n);
        }
      h_prev = out[t];
    }
    ctx->save_for_backward({x, h0, w_ih, w_hh, hg, act, out});
    return {out, out[T - 1].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &w_ih = saved[2], &w_hh = saved[3], &hg = saved[4],
                 &act = saved[5], &out = saved[6];
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
    const Tensor d_out = grads[0].defined() ? grads[0].contiguous() : Tensor();
    Tensor dh = grads[1].defined() ? grads[1].clone().contiguous() : torch::zeros({B, H}, x.options());
    Tensor d_xg = torch::empty({T, B, 3 * H}, x.options());
    Tensor d_hg = torch::empty({T, B, 3 * H}, x.options());
    Tensor dh_direct = torch::empty({B, H}, x.options());
    const PackedWeight w_hh_packed(w_hh);  // (3H, H)
    for (int64_t t = T - 1; t >= 0; --t) {
      const float* ap = act[t].data_ptr<float>();
      const float* hgp = hg[t].data_ptr<float>();
      const float* hprev = (t > 0 ? out[t - 1] : h0).data_ptr<float>();
      const float* dop = d_out.defined() ? d_out[t].data_ptr<float>() : nullptr;
      const float* dhp = dh.data_ptr<float>();
      float* __restrict dxp = d_xg[t].data_ptr<float>();
      float* __restrict dhgp = d_hg[t].data_ptr<float>();
      float* __restrict ddp = dh_direct.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, r_i = b * 3 * H + j, z_i = r_i + H, n_i = r_i + 2 * H;
          const float r = ap[r_i], z = ap[z_i], n = ap[n_i];
          const float dht = dhp[k] + (dop ? dop[k] : 0.0f);
          const float dn = dht * (1.0f - z) * (1.0f - n * n);
          const float dz = dht * (hprev[k] - n) * z * (1.0f - z);
          const float dr = dn * hgp[n_i] * r * (1.0f - r);
          dxp[r_i] = dr;
          dxp[z_i] = dz;
          dxp[n_i] = dn;
          dhgp[r_i] = dr;
          dhgp[z_i] = dz;
          dhgp[n_i] = dn * r;
          ddp[k] = dht * z;
        }
      dh.copy_(dh_direct);
      w_hh_packed.multiply(d_hg[t], dh, /*accumulate=*/true);  // dh_{t-1} = dh_direct + d_hg W_hh
    }
    const Tensor dxg2 = d_xg.view({T * B, 3 * H}), dhg2 = d_hg.view({T * B, 3 * H});
    const Tensor dx = dxg2.mm(w_ih).view(x.sizes());
    Tensor dw_hh = d_hg[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_hg.narrow(0, 1, T - 1).reshape({(T - 1) * B, 3 * H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    return {dx, dh, dxg2.t().mm(x.reshape({T * B, -1})), dw_hh, dxg2.sum(0), dhg2.sum(0)};
  }
};

// ---------------------------------------------------------------- RNN (tanh)
struct RnnFunction : public torch::autograd::Function<RnnFunction> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor b_ih,
                               Tensor b_hh) {
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
    Tensor out = torch::addmm(b_ih + b_hh, x.reshape({T * B, -1}), w_ih.t()).view({T, B, H});
    const PackedWeight w_hh_t(w_hh.t());  // (H, H)
    Tensor h_prev = h0.contiguous();
    for (int64_t t = 0; t < T; ++t) {
      Tensor o = out[t];
      w_hh_t.multiply(h_prev, o, /*accumulate=*/true);
      o.tanh_();
      h_prev = o;
    }
    ctx->save_for_backward({x, h0, w_ih, w_hh, out});
    return {out, out[T - 1].clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &w_ih = saved[2], &w_hh = saved[3], &out = saved[4];
    const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1);
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
    const Tensor dp2 = d_pre.view({T * B, H});
    const Tensor dx = dp2.mm(w_ih).view(x.sizes());
    Tensor dw_hh = d_pre[0].t().mm(h0);
    if (T > 1) dw_hh.addmm_(d_pre.narrow(0, 1, T - 1).reshape({(T - 1) * B, H}).t(),
                            out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    const Tensor db = dp2.sum(0);
    return {dx, dh, dp2.t().mm(x.reshape({T * B, -1})), dw_hh, db, db};
  }
};

}  // namespace

bool fused_rnn_supported(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.dim() == 3 && x.size(0) > 0;
}

FusedLayerOutput fused_rnn_layer(CellType cell, const torch::Tensor& x, const torch::Tensor& h0,
                                 const torch::Tensor& c0, const torch::Tensor& w_ih, const torch::Tensor& w_hh,
                                 const torch::Tensor& b_ih, const torch::Tensor& b_hh) {
  TORCH_CHECK(fused_rnn_supported(x), "fused RNN layers need float32 CPU input of shape (T, B, I)");
  const torch::Tensor xc = x.contiguous();
  switch (cell) {
    case CellType::LSTM: {
      auto r = LstmFunction::apply(xc, h0, c0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], r[2]};
    }
    case CellType::GRU: {
      auto r = GruFunction::apply(xc, h0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], {}};
    }
    case CellType::RNN: {
      auto r = RnnFunction::apply(xc, h0, w_ih, w_hh, b_ih, b_hh);
      return {r[0], r[1], {}};
    }
  }
  TORCH_CHECK(false, "unknown cell");
}

}  // namespace charrnn
