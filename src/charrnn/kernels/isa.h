// Which instruction set charrnn's hand-written kernels may use: the
// recurrent-product tiles (packed_weight.cpp) and the element-wise loops of
// the fused layers and the decoder (fused_rnn.cpp). The binary targets plain
// x86-64 so that it runs anywhere; each kernel is also compiled for AVX2+FMA
// and AVX-512F, and picks the widest this CPU runs at every call.
//
// CHARRNN_ISA=avx512|avx2|generic caps that choice, so that an AVX-512 machine
// can run and measure the code an AVX2-only CPU (AMD Zen 1-3, most client
// Intel parts, older cloud VMs) runs, and any machine the portable fallback
// that non-x86 CPUs run (LibTorch's own matrix products, plain C++ loops).
// It caps charrnn's kernels only: OpenBLAS picks its kernels when it loads
// (OPENBLAS_CORETYPE=Haswell caps it) and ATen at its first op
// (ATEN_CPU_CAPABILITY=avx2).
#pragma once

#include <string>

namespace charrnn {

enum class Isa {
  Generic = 0,  ///< no x86 vector extension beyond the baseline (SSE2 on x86-64; any CPU)
  Avx2 = 1,     ///< AVX2 with FMA: 16 registers of 8 floats
  Avx512 = 2,   ///< AVX-512F: 32 registers of 16 floats
};

/// "generic", "avx2" or "avx512".
const char* to_string(Isa isa);

/// The widest set this CPU and operating system run (which also checks that
/// the OS saves the wider registers), and this build has kernels for.
Isa cpu_isa();

/// What the kernels use now: cpu_isa(), capped by $CHARRNN_ISA (read once)
/// or by cap_kernel_isa(). Throws UsageError naming the variable when it is
/// set to anything but avx512, avx2, generic or an empty string.
Isa kernel_isa();

/// Caps kernel_isa() from now on, in place of $CHARRNN_ISA (a cap wider than
/// the CPU runs is the CPU's set). For tests that run every path in one process.
void cap_kernel_isa(Isa cap);

}  // namespace charrnn
