#include "charrnn/kernels/packed_weight.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <utility>

#include "charrnn/kernels/isa.h"
#include "charrnn/runtime.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CHARRNN_X86_KERNELS 1
#include <immintrin.h>
#endif

namespace charrnn {

namespace {

constexpr int64_t kPanel = PackedWeight::kPanelColumns;  // columns per packed panel: two AVX-512 or four AVX2 registers

// A tile computes rows x 32 of c from `rows` rows of a and one panel
// (K, 32) of b. Its accumulators stay in registers for the whole K loop, so c
// is read and written once per tile; each k costs one broadcast of a per row
// and two (AVX-512) or four (AVX2) aligned loads of the panel.
using TileKernel = void (*)(int64_t K, const float* a, int64_t lda, const float* panel, float* c, int64_t ldc,
                            bool accumulate);

#ifdef CHARRNN_X86_KERNELS

// The loops over a tile's rows and registers must be unrolled completely so
// that acc[][] lives in registers. GCC 12 at -O3 left the AVX2 tile's loops
// rolled and kept acc on the stack: a store after every multiply-add, which
// held the kernel to 29 GFLOP/s on a Zen 3 core (85 unrolled, against
// OpenBLAS's 54 on the same product; docs/performance.md).
#if defined(__clang__)
#define CHARRNN_UNROLL _Pragma("unroll")
#else
#define CHARRNN_UNROLL _Pragma("GCC unroll 16")
#endif

template <int MR>
__attribute__((target("avx512f"))) void tile_avx512(int64_t K, const float* a, int64_t lda, const float* panel,
                                                    float* c, int64_t ldc, bool accumulate) {
  __m512 acc[MR][2];
  CHARRNN_UNROLL for (int r = 0; r < MR; ++r)
    CHARRNN_UNROLL for (int z = 0; z < 2; ++z)
      acc[r][z] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * z) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_load_ps(panel + k * kPanel), b1 = _mm512_load_ps(panel + k * kPanel + 16);
    CHARRNN_UNROLL for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  CHARRNN_UNROLL for (int r = 0; r < MR; ++r)
    CHARRNN_UNROLL for (int z = 0; z < 2; ++z) _mm512_storeu_ps(c + r * ldc + 16 * z, acc[r][z]);
}

// tiles[r] computes r rows; the row count is known only at run time
constexpr TileKernel kAvx512Tiles[] = {nullptr,           tile_avx512<1>, tile_avx512<2>, tile_avx512<3>, tile_avx512<4>,
                                       tile_avx512<5>,    tile_avx512<6>, tile_avx512<7>, tile_avx512<8>};

// AVX2 has 16 registers: 6 rows x 2 registers of accumulators, two of the
// panel and one broadcast. A 32-column panel is done as two 16-column halves.
template <int MR>
__attribute__((target("avx2,fma"))) void half_tile_avx2(int64_t K, const float* a, int64_t lda, const float* panel,
                                                        float* c, int64_t ldc, bool accumulate) {
  __m256 acc[MR][2];
  CHARRNN_UNROLL for (int r = 0; r < MR; ++r)
    CHARRNN_UNROLL for (int z = 0; z < 2; ++z)
      acc[r][z] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * z) : _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(panel + k * kPanel), b1 = _mm256_load_ps(panel + k * kPanel + 8);
    CHARRNN_UNROLL for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + k);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  CHARRNN_UNROLL for (int r = 0; r < MR; ++r)
    CHARRNN_UNROLL for (int z = 0; z < 2; ++z) _mm256_storeu_ps(c + r * ldc + 8 * z, acc[r][z]);
}

template <int MR>
__attribute__((target("avx2,fma"))) void tile_avx2(int64_t K, const float* a, int64_t lda, const float* panel,
                                                   float* c, int64_t ldc, bool accumulate) {
  half_tile_avx2<MR>(K, a, lda, panel, c, ldc, accumulate);
  half_tile_avx2<MR>(K, a, lda, panel + 16, c + 16, ldc, accumulate);
}

constexpr TileKernel kAvx2Tiles[] = {nullptr, tile_avx2<1>, tile_avx2<2>, tile_avx2<3>, tile_avx2<4>, tile_avx2<5>,
                                     tile_avx2<6>};

#endif  // CHARRNN_X86_KERNELS

// The portable tile, for any CPU: plain loops over one row and a whole
// 32-column panel at a time, which compilers vectorise for the baseline
// (SSE2 on x86-64, NEON on ARM). It exists for its order of summing, not its
// speed: each entry of c is summed over k in order whatever rows come with
// it, as in the x86 kernels, so the decoder's streams give the same text
// split over any number of threads on every CPU. (OpenBLAS's product does
// not promise that across row counts.)
template <int MR>
void tile_portable(int64_t K, const float* a, int64_t lda, const float* panel, float* c, int64_t ldc,
                   bool accumulate) {
  for (int r = 0; r < MR; ++r) {
    float acc[kPanel];
    for (int64_t j = 0; j < kPanel; ++j) acc[j] = accumulate ? c[r * ldc + j] : 0.0f;
    const float* a_row = a + r * lda;
    for (int64_t k = 0; k < K; ++k) {
      const float av = a_row[k];
      const float* b_row = panel + k * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) acc[j] += av * b_row[j];
    }
    for (int64_t j = 0; j < kPanel; ++j) c[r * ldc + j] = acc[j];
  }
}

constexpr TileKernel kPortableTiles[] = {nullptr, tile_portable<1>, tile_portable<2>, tile_portable<3>,
                                         tile_portable<4>};

// Panels outer, row blocks inner: a panel (K x 32 floats, 32 KiB for K=256)
// stays in the first-level cache while every row block passes over it.
// The M rows are cut into as few blocks as the tallest tile allows, of sizes
// that differ by at most one: a short last block has too few independent
// accumulators to hide the multiply-add latency (an AVX2 tile of 2 rows has
// 4, where the two FMA ports of 4 cycles' latency need 8), so 16 rows run as
// 6 + 5 + 5 rather than 6 + 6 + 4 and 32 as 6 + 6 + 5 + 5 + 5 + 5, not
// 6 x 5 + 2. Each entry of c is still summed over k in order.
void multiply_panels(const TileKernel* tiles, int64_t max_rows, int64_t M, int64_t N, int64_t K, const float* a,
                     int64_t lda, const float* panels, float* c, int64_t ldc, bool accumulate) {
  if (M == 0) return;
  float edge[8 * kPanel];  // a partial last panel's tile, padded to 32 columns
  const int64_t blocks = (M + max_rows - 1) / max_rows;
  const int64_t short_rows = M / blocks, taller_blocks = M % blocks;  // the first taller_blocks get one row more
  for (int64_t p = 0; p * kPanel < N; ++p) {
    const float* panel = panels + p * K * kPanel;
    const int64_t cols = std::min(kPanel, N - p * kPanel);
    for (int64_t block = 0, first = 0, rows = 0; block < blocks; ++block, first += rows) {
      rows = short_rows + (block < taller_blocks);
      float* tile_c = c + first * ldc + p * kPanel;
      if (cols == kPanel) {
        tiles[rows](K, a + first * lda, lda, panel, tile_c, ldc, accumulate);
        continue;
      }
      std::fill(edge, edge + rows * kPanel, 0.0f);
      if (accumulate)
        for (int64_t r = 0; r < rows; ++r) std::memcpy(edge + r * kPanel, tile_c + r * ldc, sizeof(float) * cols);
      tiles[rows](K, a + first * lda, lda, panel, edge, kPanel, accumulate);
      for (int64_t r = 0; r < rows; ++r) std::memcpy(tile_c + r * ldc, edge + r * kPanel, sizeof(float) * cols);
    }
  }
}

// A panel kernel's tiles, by height, and its tallest (each table's last entry).
std::pair<const TileKernel*, int64_t> tile_table(PackedWeight::Kernel kernel) {
#ifdef CHARRNN_X86_KERNELS
  if (kernel == PackedWeight::Kernel::Avx512) return {kAvx512Tiles, std::size(kAvx512Tiles) - 1};
  if (kernel == PackedWeight::Kernel::Avx2) return {kAvx2Tiles, std::size(kAvx2Tiles) - 1};
#endif
  return {kPortableTiles, std::size(kPortableTiles) - 1};
}

}  // namespace

bool PackedWeight::supported(Kernel kernel) {
  switch (kernel) {
    case Kernel::Best:
    case Kernel::Portable:
    case Kernel::LibTorch: return true;
    // what the CPU runs, whatever CHARRNN_ISA says (cpu_isa() is Generic
    // wherever this file has no x86 kernels)
    case Kernel::Avx512: return cpu_isa() >= Isa::Avx512;
    case Kernel::Avx2: return cpu_isa() >= Isa::Avx2;
  }
  return false;
}

PackedWeight::Kernel PackedWeight::widest_kernel() {
  switch (kernel_isa()) {  // the CPU's widest, capped by CHARRNN_ISA
    case Isa::Avx512: return Kernel::Avx512;
    case Isa::Avx2: return Kernel::Avx2;
    case Isa::Generic: return Kernel::Portable;
  }
  return Kernel::Portable;
}

PackedWeight::Kernel PackedWeight::best_kernel(int64_t blas_thread_count) {
  // one product on several BLAS threads beats one thread running a tile
  // kernel, and BLAS's own kernels for the CPU beat the portable tile
  return blas_thread_count > 1 || kernel_isa() == Isa::Generic ? Kernel::LibTorch : widest_kernel();
}

const char* PackedWeight::describe(Kernel kernel) {
  switch (kernel) {
    case Kernel::Best: return "best";
    case Kernel::Avx512: return "avx512 8x32 tiles on 32-column panels";
    case Kernel::Avx2: return "avx2 6x16 tiles on 32-column panels";
    case Kernel::Portable: return "portable 1x32 rows on 32-column panels";
    case Kernel::LibTorch: return "libtorch mm (no packing)";
  }
  return "unknown";
}

PackedWeight::PackedWeight(const torch::Tensor& b, Kernel kernel) : b_(b), k_(b.size(0)), n_(b.size(1)) {
  TORCH_CHECK(b.dim() == 2 && b.scalar_type() == torch::kFloat && b.device().is_cpu(),
              "PackedWeight needs a 2-d float32 CPU matrix");
  TORCH_CHECK(supported(kernel), "this CPU cannot run the requested matrix kernel");
  kernel_ = kernel == Kernel::Best ? best_kernel(blas_threads()) : kernel;
  if (kernel_ == Kernel::LibTorch || k_ == 0 || n_ == 0) return;
  const int64_t panels = (n_ + kPanel - 1) / kPanel;
  // LibTorch's CPU allocator aligns to 64 bytes, as the aligned loads need
  panels_ = torch::zeros({panels, k_, kPanel}, b.options());
  const auto src = b.accessor<float, 2>();
  float* dst = panels_.data_ptr<float>();
  const bool rows_contiguous = b.stride(1) == 1;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t first = p * kPanel, cols = std::min(kPanel, n_ - first);
    float* panel = dst + p * k_ * kPanel;
    if (rows_contiguous) {
      for (int64_t k = 0; k < k_; ++k) std::memcpy(panel + k * kPanel, &src[k][first], sizeof(float) * cols);
    } else {  // a transposed view: read along its columns, which are contiguous
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t k = 0; k < k_; ++k) panel[k * kPanel + j] = src[k][first + j];
    }
  }
}

void PackedWeight::multiply(const torch::Tensor& a, torch::Tensor& c, bool accumulate) const {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == k_ && c.dim() == 2 && c.size(0) == a.size(0) && c.size(1) == n_,
              "PackedWeight::multiply: shapes do not match");
  TORCH_CHECK(a.scalar_type() == torch::kFloat && c.scalar_type() == torch::kFloat && a.device().is_cpu() &&
                  c.device().is_cpu(),
              "PackedWeight::multiply needs float32 CPU tensors");
  const int64_t M = a.size(0);
  if (kernel_ == Kernel::LibTorch || M > kMaxRows || k_ == 0 || n_ == 0 || a.stride(1) != 1 || c.stride(1) != 1) {
    if (accumulate)
      c.addmm_(a, b_);
    else
      torch::mm_out(c, a, b_);
    return;
  }
  multiply(M, a.data_ptr<float>(), a.stride(0), c.data_ptr<float>(), c.stride(0), accumulate);
}

void PackedWeight::multiply(int64_t M, const float* a, int64_t lda, float* c, int64_t ldc, bool accumulate) const {
  if (M == 0) return;
  if (kernel_ == Kernel::LibTorch || M > kMaxRows || k_ == 0 || n_ == 0) {
    const torch::Tensor a_view = torch::from_blob(const_cast<float*>(a), {M, k_}, {lda, 1}, b_.options());
    torch::Tensor c_view = torch::from_blob(c, {M, n_}, {ldc, 1}, b_.options());
    if (accumulate)
      c_view.addmm_(a_view, b_);
    else
      torch::mm_out(c_view, a_view, b_);
    return;
  }
  const auto [tiles, max_rows] = tile_table(kernel_);
  multiply_panels(tiles, max_rows, M, n_, k_, a, lda, panels_.data_ptr<float>(), c, ldc, accumulate);
}

void PackedWeight::multiply_columns(const float* a, int64_t lda, int64_t rows, float* c, int64_t ldc, bool accumulate,
                                    int64_t first, int64_t count) const {
  TORCH_CHECK(kernel_ != Kernel::LibTorch && rows <= kMaxRows && first % kPanel == 0 && count % kPanel == 0,
              "PackedWeight::multiply_columns: needs a panel kernel, at most kMaxRows rows and whole panels");
  const int64_t n = std::min(count, n_ - first);
  if (n <= 0 || rows == 0 || k_ == 0) return;
  const auto [tiles, max_rows] = tile_table(kernel_);
  // the panels of these columns are contiguous in panels_, and each tile
  // sums over k in the same order as in a whole product
  multiply_panels(tiles, max_rows, rows, n, k_, a, lda, panels_.data_ptr<float>() + (first / kPanel) * k_ * kPanel,
                  c + first, ldc, accumulate);
}

}  // namespace charrnn
