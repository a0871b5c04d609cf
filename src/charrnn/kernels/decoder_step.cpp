#include "charrnn/kernels/decoder_step.h"

#include "charrnn/kernels/vector_math.h"

namespace charrnn {

// Rows are strided: h lives inside the decoder's
// [embedding; h_0; h_1; ...] buffer.
template <typename V>
CHARRNN_KERNEL_BODY void lstm_decoder_step_body(int64_t B, int64_t H, const float* gates, int64_t gate_stride,
                                                float* c, int64_t c_stride, float* h, int64_t h_stride) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    const float* row = gates + b * gate_stride;
    float* cr = c + b * c_stride;
    float* hr = h + b * h_stride;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V i = sigmoidv(loadv<V>(row + j)), f = sigmoidv(loadv<V>(row + H + j)),
              o = sigmoidv(loadv<V>(row + 2 * H + j)), g = tanhv(loadv<V>(row + 3 * H + j));
      const V cn = f * loadv<V>(cr + j) + i * g;
      storev(cr + j, cn);
      storev(hr + j, o * tanhv(cn));
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float i = sigmoid1(row[j]), f = sigmoid1(row[H + j]), o = sigmoid1(row[2 * H + j]),
                  g = std::tanh(row[3 * H + j]);
      const float cn = f * cr[j] + i * g;
      cr[j] = cn;
      hr[j] = o * std::tanh(cn);
    }
  }
}
CHARRNN_FOR_EACH_ISA(lstm_decoder_step, (int64_t B, int64_t H, const float* gates, int64_t gate_stride, float* c,
                      int64_t c_stride, float* h, int64_t h_stride), (B, H, gates, gate_stride, c, c_stride, h,
                      h_stride))

template <typename V>
CHARRNN_KERNEL_BODY void gru_decoder_step_body(int64_t B, int64_t H, const float* gates, int64_t gate_stride, float* h,
                                               int64_t h_stride) {
  const int64_t vector_end = H - H % kLanes<V>;
  for (int64_t b = 0; b < B; ++b) {
    const float* row = gates + b * gate_stride;
    float* hr = h + b * h_stride;
    for (int64_t j = 0; j < vector_end; j += kLanes<V>) {
      const V r = sigmoidv(loadv<V>(row + j)), z = sigmoidv(loadv<V>(row + H + j)),
              n = tanhv(loadv<V>(row + 2 * H + j) + r * loadv<V>(row + 3 * H + j));
      storev(hr + j, n + z * (loadv<V>(hr + j) - n));
    }
    for (int64_t j = vector_end; j < H; ++j) {
      const float r = sigmoid1(row[j]), z = sigmoid1(row[H + j]), n = std::tanh(row[2 * H + j] + r * row[3 * H + j]);
      hr[j] = n + z * (hr[j] - n);
    }
  }
}
CHARRNN_FOR_EACH_ISA(gru_decoder_step, (int64_t B, int64_t H, const float* gates, int64_t gate_stride, float* h,
                      int64_t h_stride), (B, H, gates, gate_stride, h, h_stride))

}  // namespace charrnn
