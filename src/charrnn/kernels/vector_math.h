// The element-wise maths every kernel shares: vector types of each
// instruction set, exp, sigmoid and tanh on them, and
// CHARRNN_FOR_EACH_ISA, which compiles a kernel once per instruction set and
// runs the widest kernel_isa() allows. Internal to src/charrnn/kernels/.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "charrnn/kernels/isa.h"

namespace charrnn {
namespace {

// Element-wise loops run over one time step's (B, H) block. The LSTM's and
// GRU's forward steps need exp, which the compiler would not vectorise, and
// their backward steps read and write the same arrays, which its alias
// analysis would not take (the GRU's stayed scalar), so both are written on
// vector types (below). The RNN's tanh goes through ATen's vectorised kernel.
//
// The binary targets plain x86-64 (SSE2) so that it runs anywhere; the loops
// that run at every time step are also compiled for AVX2+FMA and AVX-512F,
// and each call runs the widest that kernel_isa() allows (isa.h): the CPU's
// set, capped by CHARRNN_ISA, so that every path can be run and measured on
// one machine. (GCC's target_clones would pick by CPU alone, at load time.)
// CHARRNN_FOR_EACH_ISA(name, (params), (args)) defines `name` over an
// always-inline `name_body<V>`, with one copy of the body per instruction
// set and V that set's register of floats.
#define CHARRNN_KERNEL_BODY __attribute__((always_inline)) inline
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CHARRNN_FOR_EACH_ISA(name, params, args)                                                      \
  __attribute__((target("avx512f"))) static void name##_avx512 params { name##_body<Floats16> args; } \
  __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body<Floats8> args; }   \
  static void name##_generic params { name##_body<Floats4> args; }                                    \
  void name params {                                                                                  \
    switch (kernel_isa()) {                                                                           \
      case Isa::Avx512: return name##_avx512 args;                                                    \
      case Isa::Avx2: return name##_avx2 args;                                                        \
      case Isa::Generic: break;                                                                       \
    }                                                                                                 \
    name##_generic args;                                                                              \
  }
#else
#define CHARRNN_FOR_EACH_ISA(name, params, args) \
  void name params { name##_body<Floats4> args; }
#endif

// The vector types of the element-wise loops, one register of each
// instruction set: 16 floats for AVX-512, 8 for AVX2, 4 for the baseline.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float Floats16 __attribute__((vector_size(64)));
typedef int32_t Ints16 __attribute__((vector_size(64)));
typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
typedef float Floats4 __attribute__((vector_size(16)));
typedef int32_t Ints4 __attribute__((vector_size(16)));
template <typename V>
struct Lanes;
template <>
struct Lanes<Floats16> {
  using Ints = Ints16;
};
template <>
struct Lanes<Floats8> {
  using Ints = Ints8;
};
template <>
struct Lanes<Floats4> {
  using Ints = Ints4;
};
template <typename V>
constexpr int64_t kLanes = sizeof(V) / sizeof(float);

// Written with GCC vector types so that exp vectorises without the
// vectoriser (it refuses the clamps as control flow), one register wide for
// each instruction set's copy: 16 floats for AVX-512, 8 for AVX2, 4 for the
// baseline (SSE2, NEON). 16-float vectors on AVX2 were two registers each and
// spilled: 826 stack accesses in the LSTM step, which took 11% of a Zen 3
// training step.
// The vector helpers are always inlined, so the ABI of passing 64-byte
// vectors between functions (which GCC warns about, at the end of the file
// for the copies, hence no pop) never comes into play.
template <typename V>
__attribute__((always_inline)) inline V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
__attribute__((always_inline)) inline void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename V>
__attribute__((always_inline)) inline V splat(float x) {
  return V{} + x;
}

// e^x within 2 ulp (Cephes' expf): x = n ln2 + r with |r| <= ln2 / 2, e^r by
// a degree-6 polynomial, 2^n through the exponent bits. x is clamped to
// where float's e^x is finite and normal.
template <typename V>
__attribute__((always_inline)) inline V expv(V x) {
  using Ints = typename Lanes<V>::Ints;
  x = x > splat<V>(88.3762626647949f) ? splat<V>(88.3762626647949f) : x;
  x = x < splat<V>(-87.3365447504019f) ? splat<V>(-87.3365447504019f) : x;
  const V fx = x * 1.44269504088896341f + 0.5f;
  Ints n = __builtin_convertvector(fx, Ints);  // truncation; floor for negative values below
  V nf = __builtin_convertvector(n, V);
  const Ints too_big = nf > fx;
  nf = too_big ? nf - 1.0f : nf;
  n = __builtin_convertvector(nf, Ints);
  const V r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  V y = splat<V>(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  V scale;
  const Ints bits = (n + 127) << 23;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}
template <typename V>
__attribute__((always_inline)) inline V sigmoidv(V x) {
  return 1.0f / (1.0f + expv(-x));
}
template <typename V>
__attribute__((always_inline)) inline V tanhv(V x) {
  return 1.0f - 2.0f / (1.0f + expv(x + x));
}

inline float sigmoid1(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace
}  // namespace charrnn
