// The generation decoder's element-wise cell steps (step_decoder.cpp): after
// the decoder's matrix product has made every row's gates, these apply the
// nonlinearities and update the state in place, on the vector maths the
// training kernels use (vector_math.h), one copy per instruction set.
//
// Shape legend: B rows (streams), H hidden.
#pragma once

#include <cstdint>

namespace charrnn {

/// The generation decoder's element-wise LSTM step (step_decoder.cpp), for
/// B rows in place. gates: rows of [i | f | o | g] before their
/// nonlinearities (the decoder's order), each H wide; c: the cell state,
/// updated; h: written. Each pointer advances by its stride per row.
void lstm_decoder_step(int64_t B, int64_t H, const float* gates, int64_t gate_stride, float* c, int64_t c_stride,
                       float* h, int64_t h_stride);
/// The same for the GRU: gates rows of [r | z | W_in x + b_in | W_hn h + b_hn],
/// r and z before the sigmoid with both biases in; h updated.
void gru_decoder_step(int64_t B, int64_t H, const float* gates, int64_t gate_stride, float* h, int64_t h_stride);

}  // namespace charrnn
