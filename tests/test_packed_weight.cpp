// PackedWeight's kernels against LibTorch's matrix product: every kernel this
// CPU can run, row counts around the tile heights (6 and 8), column counts
// around the 32-column panel, transposed and strided operands, and both
// c = a b and c += a b.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/kernels/packed_weight.h"
#include "charrnn/runtime.h"
#include "test_helpers.h"

namespace {

using charrnn::PackedWeight;
using Kernel = PackedWeight::Kernel;

class PackedWeightKernels : public ::testing::TestWithParam<Kernel> {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    if (!PackedWeight::supported(GetParam())) GTEST_SKIP() << "this CPU lacks the instructions for this kernel";
  }
};

// max |x - y| relative to the size of the reference's entries
double relative_error(const torch::Tensor& x, const torch::Tensor& y) {
  return (x.to(torch::kDouble) - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

TEST_P(PackedWeightKernels, MatchesTheMatrixProductForAnyShape) {
  for (const int64_t M : std::initializer_list<int64_t>{1, 5, 6, 7, 8, 9, 16, 17, 33, PackedWeight::kMaxRows + 3}) {
    for (const int64_t K : std::initializer_list<int64_t>{1, 7, 64, 256}) {
      for (const int64_t N : std::initializer_list<int64_t>{1, 31, 32, 33, 100, 128}) {
        const torch::Tensor a = torch::randn({M, K}), b = torch::randn({K, N}), c0 = torch::randn({M, N});
        const torch::Tensor product = a.to(torch::kDouble).mm(b.to(torch::kDouble));
        const PackedWeight packed(b, GetParam());
        torch::Tensor c = c0.clone();
        packed.multiply(a, c, /*accumulate=*/false);
        const std::string shape = std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
        EXPECT_LT(relative_error(c, product), 1e-5) << shape << " overwrite";
        c = c0.clone();
        packed.multiply(a, c, /*accumulate=*/true);
        EXPECT_LT(relative_error(c, product + c0.to(torch::kDouble)), 1e-5) << shape << " accumulate";
      }
    }
  }
}

TEST_P(PackedWeightKernels, TakesTransposedWeightsAndStridedRows) {
  // the layers' operands: W_hh^T is a transposed view, and c may be one
  // time step of a (T, B, 4H) buffer or columns cut out of a wider matrix
  const torch::Tensor w = torch::randn({96, 40});  // (N, K), used as its transpose
  const torch::Tensor wide_a = torch::randn({11, 50});
  const torch::Tensor a = wide_a.narrow(1, 3, 40);  // row stride 50
  torch::Tensor wide_c = torch::zeros({11, 120});
  torch::Tensor c = wide_c.narrow(1, 10, 96);  // row stride 120
  const PackedWeight packed(w.t(), GetParam());
  packed.multiply(a, c, /*accumulate=*/false);
  const torch::Tensor product = a.to(torch::kDouble).mm(w.t().to(torch::kDouble));
  EXPECT_LT(relative_error(c, product), 1e-5);
  // nothing outside the view was written
  EXPECT_EQ(wide_c.narrow(1, 0, 10).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(wide_c.narrow(1, 106, 14).abs().sum().item<float>(), 0.0f);
}

// multiply_columns(): a share of the columns, summed as the whole product
// sums them (bit for bit), and nothing outside the share written.
TEST_P(PackedWeightKernels, AShareOfTheColumnsEqualsThoseOfTheWholeProduct) {
  if (GetParam() == PackedWeight::Kernel::LibTorch) GTEST_SKIP() << "LibTorch's product has no panels to split";
  constexpr int64_t panel = PackedWeight::kPanelColumns;
  const torch::Tensor a = torch::randn({3, 70}), b = torch::randn({70, 100}), c0 = torch::randn({3, 100});
  const PackedWeight packed(b, GetParam());
  ASSERT_TRUE(packed.splits_columns());
  torch::Tensor whole = c0.clone();
  packed.multiply(a, whole, /*accumulate=*/true);
  for (const int64_t first : {int64_t{0}, panel, 3 * panel}) {
    for (const int64_t count : {panel, 2 * panel, 4 * panel}) {
      torch::Tensor c = c0.clone();
      packed.multiply_columns(a.data_ptr<float>(), a.stride(0), 3, c.data_ptr<float>(), c.stride(0),
                              /*accumulate=*/true, first, count);
      const int64_t end = std::min<int64_t>(first + count, 100);
      const std::string share = std::to_string(first) + "+" + std::to_string(count);
      EXPECT_TRUE(torch::equal(c.narrow(1, first, end - first), whole.narrow(1, first, end - first))) << share;
      EXPECT_TRUE(torch::equal(c.narrow(1, 0, first), c0.narrow(1, 0, first))) << share;
      EXPECT_TRUE(torch::equal(c.narrow(1, end, 100 - end), c0.narrow(1, end, 100 - end))) << share;
    }
  }
  torch::Tensor c = c0.clone();
  EXPECT_THROW(packed.multiply_columns(a.data_ptr<float>(), 70, 3, c.data_ptr<float>(), 100, true, 5, panel),
               c10::Error);
}

TEST_P(PackedWeightKernels, IsDeterministic) {
  const torch::Tensor a = torch::randn({16, 256}), b = torch::randn({256, 1024});
  const PackedWeight packed(b, GetParam());
  torch::Tensor c1 = torch::empty({16, 1024}), c2 = torch::empty({16, 1024});
  packed.multiply(a, c1, false);
  packed.multiply(a, c2, false);
  EXPECT_TRUE(torch::equal(c1, c2));
}

TEST(PackedWeight, TheInstructionSetCapChoosesTheKernel) {
  // CHARRNN_ISA (here cap_kernel_isa) decides what widest_kernel() and Best
  // run, so that one machine can run every CPU's path
  charrnn::set_blas_threads(1);
  const torch::Tensor b = torch::randn({8, 8});
  const struct {
    charrnn::Isa isa;
    Kernel widest, best;
  } cases[] = {{charrnn::Isa::Generic, Kernel::Portable, Kernel::LibTorch},
               {charrnn::Isa::Avx2, Kernel::Avx2, Kernel::Avx2},
               {charrnn::Isa::Avx512, Kernel::Avx512, Kernel::Avx512}};
  for (const auto& c : cases) {
    if (charrnn::cpu_isa() < c.isa) continue;
    const charrnn_test::ScopedKernelIsa cap(c.isa);
    EXPECT_EQ(PackedWeight::widest_kernel(), c.widest) << charrnn::to_string(c.isa);
    EXPECT_EQ(PackedWeight(b).kernel(), c.best) << charrnn::to_string(c.isa);
  }
  // a cap wider than the CPU runs is the CPU's set
  const charrnn_test::ScopedKernelIsa cap(charrnn::Isa::Avx512);
  EXPECT_EQ(charrnn::kernel_isa(), charrnn::cpu_isa());
}

TEST(PackedWeight, BestLeavesProductsOnSeveralBlasThreadsToLibTorch) {
  const torch::Tensor b = torch::randn({8, 8});
  charrnn::set_blas_threads(1);
  if (charrnn::blas_threads() != 1)  // a LibTorch with MKL (PyTorch's wheels) follows its intra-op threads
    GTEST_SKIP() << "no OpenBLAS: the BLAS threads are LibTorch's " << charrnn::blas_threads();
  charrnn::set_blas_threads(2);
  if (charrnn::blas_threads() > 1) EXPECT_EQ(PackedWeight(b).kernel(), Kernel::LibTorch);
  charrnn::set_blas_threads(1);
  ASSERT_EQ(charrnn::blas_threads(), 1);
  // with one BLAS thread, the widest tile kernel within the CHARRNN_ISA cap;
  // the portable tile is no faster than BLAS, so Best leaves that case to it
  const Kernel chosen = PackedWeight(b).kernel();
  EXPECT_NE(chosen, Kernel::Best);
  switch (charrnn::kernel_isa()) {
    case charrnn::Isa::Avx512: EXPECT_EQ(chosen, Kernel::Avx512); break;
    case charrnn::Isa::Avx2: EXPECT_EQ(chosen, Kernel::Avx2); break;
    case charrnn::Isa::Generic:
      EXPECT_EQ(chosen, Kernel::LibTorch);
      EXPECT_EQ(PackedWeight::widest_kernel(), Kernel::Portable);
      return;
  }
  EXPECT_EQ(PackedWeight::widest_kernel(), chosen);
}

TEST(PackedWeight, RejectsMismatchedShapes) {
  const PackedWeight packed(torch::randn({4, 6}), Kernel::LibTorch);
  torch::Tensor c = torch::empty({2, 6});
  EXPECT_THROW(packed.multiply(torch::randn({2, 5}), c, false), c10::Error);
  torch::Tensor wrong = torch::empty({2, 5});
  EXPECT_THROW(packed.multiply(torch::randn({2, 4}), wrong, false), c10::Error);
}

INSTANTIATE_TEST_SUITE_P(AllKernels, PackedWeightKernels,
                         ::testing::Values(Kernel::Avx512, Kernel::Avx2, Kernel::Portable, Kernel::LibTorch),
                         [](const ::testing::TestParamInfo<Kernel>& info) {
                           switch (info.param) {
                             case Kernel::Avx512: return std::string("Avx512");
                             case Kernel::Avx2: return std::string("Avx2");
                             case Kernel::Portable: return std::string("Portable");
                             case Kernel::LibTorch: return std::string("LibTorch");
                             default: return std::string("Best");
                           }
                         });

}  // namespace
