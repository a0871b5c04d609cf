// runtime: the OpenBLAS core charrnn asks for when OpenBLAS's own choice
// lacks the CPU's AVX2 (a CPU newer than the OpenBLAS).
#include <gtest/gtest.h>

#include "charrnn/runtime.h"

namespace {

using charrnn::better_openblas_core;

TEST(OpenBlasCore, SseFallbackOnAnAvxCpuIsReplaced) {
  // Debian 12's OpenBLAS on an Emerald Rapids Xeon reports Prescott
  EXPECT_EQ(better_openblas_core("Prescott", true, true, false), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Nehalem", true, false, false), "Haswell");
  EXPECT_EQ(better_openblas_core("Barcelona", true, false, true), "Zen");
  EXPECT_EQ(better_openblas_core("Core2", true, true, true), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Sandybridge", true, false, false), "Haswell") << "AVX without AVX2 kernels";
}

TEST(OpenBlasCore, AnAvx2CoreOrACpuWithoutAvx2IsLeftAlone) {
  for (const char* core : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SAPPHIRERAPIDS", "zen", "Excavator"})
    EXPECT_EQ(better_openblas_core(core, true, true, false), "") << core;
  EXPECT_EQ(better_openblas_core("Prescott", false, false, false), "") << "SSE3 is right for a CPU without AVX2";
}

}  // namespace
