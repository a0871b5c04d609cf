// Matrix products with few rows against one weight matrix, many times over:
// the recurrent product h_{t-1} W_hh^T of every time step (B rows, B the
// batch or a thread's share of it), forward and backward.
//
// OpenBLAS repacks the whole weight matrix on every call. For a (16, 256) x
// (256, 1024) product that copy costs nearly as much as the arithmetic, and
// such products ran at 50-65% of a core's matrix rate here. PackedWeight
// packs W once per layer call into 32-column panels and runs a register-
// tiled AVX-512 or AVX2 kernel over them, single-threaded: about 110 GFLOP/s
// on one AVX-512 core of the project's machine against OpenBLAS's 50-75, and
// 60-85 on a Zen 3 core against OpenBLAS's 45-60 (docs/performance.md). The
// instruction set is the CPU's widest within CHARRNN_ISA (isa.h). Without
// AVX2, with more rows than the kernel is meant for, or while BLAS may use
// several threads (one product then runs on every core, which a
// single-threaded kernel cannot beat), Best falls back to LibTorch's own
// product; the portable tile is there for callers that need its order of
// summing on any CPU.
//
// Shape legend: M rows of the left operand, K inner size, N columns.
#pragma once

#include <torch/torch.h>

namespace charrnn {

class PackedWeight {
 public:
  enum class Kernel {
    Best,      ///< best_kernel(): a tile kernel while BLAS runs single-threaded on x86, else LibTorch
    Avx512,    ///< AVX-512F, 8 rows x 32 columns per tile
    Avx2,      ///< AVX2 with FMA, 6 rows x 16 columns per tile
    Portable,  ///< any CPU: loops the compiler vectorises, a row x 32 columns at a time
    LibTorch,  ///< torch::addmm, no packing
  };

  /// Whether this CPU (and build) can run `kernel`, whatever CHARRNN_ISA says.
  /// Best, Portable and LibTorch always can.
  static bool supported(Kernel kernel);
  /// The widest packed kernel this CPU runs (Avx512, Avx2, else Portable)
  /// within the CHARRNN_ISA cap (isa.h), whatever BLAS's thread count: what
  /// Best picks with one BLAS thread on x86 (elsewhere Best leaves products
  /// to BLAS, which has kernels for the CPU). Callers that need each row's
  /// sums in the same order whatever rows come with it (the decoder's parts)
  /// take this.
  static Kernel widest_kernel();
  /// What Best stands for while BLAS runs `blas_thread_count` threads (the
  /// constructor asks with blas_threads()).
  static Kernel best_kernel(int64_t blas_thread_count);
  /// A kernel's name and tile shape, for `charrnn bench`'s report.
  static const char* describe(Kernel kernel);

  /// b: (K, N) float32 on the CPU, any strides (W_hh^T is a transposed view).
  /// The kernels use a copy packed now, the LibTorch path reads b itself:
  /// b must not change while this object is in use.
  explicit PackedWeight(const torch::Tensor& b, Kernel kernel = Kernel::Best);

  /// c = a b when `accumulate` is false, c += a b when it is true.
  /// a: (M, K), c: (M, N), float32 CPU; c may be a view with any row stride.
  void multiply(const torch::Tensor& a, torch::Tensor& c, bool accumulate) const;
  /// The same on raw row-major float32 CPU memory: a (M, K) with row stride
  /// lda, c (M, N) with row stride ldc. The time loops call this once per
  /// step, where the tensor overload's checks and views cost as much as a
  /// short row tile.
  void multiply(int64_t M, const float* a, int64_t lda, float* c, int64_t ldc, bool accumulate) const;

  /// Columns [first, first + count) of c = a b (or c += a b), the others
  /// untouched: the share of one of several threads that split a product of
  /// few rows by columns. first and count are multiples of kPanelColumns (count may
  /// run past N, which ends it). Each entry is summed exactly as multiply()
  /// sums it. Panel kernels only (not LibTorch); a must have unit column
  /// stride, c too.
  void multiply_columns(const float* a, int64_t lda, int64_t rows, float* c, int64_t ldc, bool accumulate,
                        int64_t first, int64_t count) const;
  /// Whether multiply_columns() can run (a panel kernel was chosen).
  bool splits_columns() const { return kernel_ != Kernel::LibTorch; }
  /// Columns per packed panel: a column split starts at a multiple of it.
  static constexpr int64_t kPanelColumns = 32;
  int64_t columns() const { return n_; }

  /// The kernel chosen at construction (never Best).
  Kernel kernel() const { return kernel_; }

  /// Rows above this go to LibTorch: its packing then pays for itself.
  static constexpr int64_t kMaxRows = 128;

 private:
  torch::Tensor b_;       // (K, N), kept for the LibTorch path
  torch::Tensor panels_;  // ceil(N / 32) panels of (K, 32), zero-padded
  int64_t k_ = 0, n_ = 0;
  Kernel kernel_ = Kernel::LibTorch;
};

}  // namespace charrnn
