#include "charrnn/kernels/isa.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "charrnn/error.h"

namespace charrnn {

namespace {

Isa detect_cpu_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports reads XGETBV too: a CPU whose OS does not save
  // the AVX-512 registers reports no AVX-512
  if (__builtin_cpu_supports("avx512f")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

Isa isa_from_environment() {
  const char* text = std::getenv("CHARRNN_ISA");
  const std::string value = text ? text : "";
  if (value.empty()) return Isa::Avx512;  // no cap
  for (const Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512})
    if (value == to_string(isa)) return isa;
  throw UsageError("CHARRNN_ISA must be avx512, avx2 or generic (the widest instruction set charrnn's kernels "
                   "may use), got \"" + value + "\"");
}

// -1 until the first kernel_isa(): the environment is read then, so that a
// bad value is reported as a usage error from configure_threads(), not at load
std::atomic<int> g_cap{-1};

}  // namespace

const char* to_string(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "generic";
}

Isa cpu_isa() {
  static const Isa detected = detect_cpu_isa();
  return detected;
}

Isa kernel_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    cap = static_cast<int>(isa_from_environment());
    g_cap.store(cap, std::memory_order_relaxed);
  }
  return std::min(cpu_isa(), static_cast<Isa>(cap));
}

void cap_kernel_isa(Isa cap) { g_cap.store(static_cast<int>(cap), std::memory_order_relaxed); }

}  // namespace charrnn
