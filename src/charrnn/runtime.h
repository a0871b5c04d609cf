// Process-wide runtime choices: which device to use and how many CPU threads.
#pragma once

#include <string>

#include <torch/torch.h>

namespace charrnn {

/// "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
/// Throws UsageError when CUDA is asked for but this build or machine lacks it.
torch::Device resolve_device(const std::string& name);
/// The same for process `local_rank` of those on its machine: torchrun's
/// convention, local rank i on GPU i when the name gives no index.
torch::Device resolve_device(const std::string& name, int64_t local_rank);

/// The state of LibTorch's global CPU generator (weights, dropout), and
/// setting it back; throws Error for a state that is not one.
torch::Tensor global_cpu_rng_state();
void set_global_cpu_rng_state(const torch::Tensor& state);

/// Gives `threads` CPU threads (0: $CHARRNN_THREADS, else all cores) to
/// matrix products (OpenBLAS) and keeps LibTorch's OpenMP pool at one thread
/// ($CHARRNN_TORCH_THREADS overrides it, for measurements). Throws
/// UsageError on a malformed environment variable. Also calls
/// keep_freed_memory_for_reuse().
void configure_threads(int64_t threads);

/// Makes glibc's allocator keep the memory a training or generation step
/// frees for the next step: blocks up to 32 MiB come from the heap instead
/// of fresh mmap()s, and up to 256 MiB of freed heap stays mapped. By
/// default glibc maps every block over 128 KiB anew and hands freed heap
/// back at once, so each step of a (T, B, 4H) gate buffer paid page faults
/// and page clearing again: LSTM 2x256 training ran 20% faster with this
/// (docs/performance.md). A GLIBC_TUNABLES setting of glibc.malloc.* is the
/// user's explicit choice and is left alone; other C libraries are too.
/// Called by configure_threads(), so every entry point gets it.
void keep_freed_memory_for_reuse();

/// Threads given to matrix products by the last configure_threads().
int64_t current_threads();

/// $name as an integer in [min, max], or `fallback` when it is unset or
/// empty. Throws UsageError naming the variable when it is anything else.
int64_t env_integer(const char* name, int64_t fallback, int64_t min, int64_t max);

/// Sets OpenBLAS's thread count alone (no-op with another BLAS).
void set_blas_threads(int64_t threads);

/// While alive, BLAS runs every product on one thread; then it gets
/// current_threads() back. For work split into parts on several threads,
/// each part with single-threaded products (training's batch split,
/// batched generation).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() { set_blas_threads(1); }
  ~SingleThreadedBlas() { set_blas_threads(current_threads()); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

/// The BLAS behind LibTorch's products and its kernel set, e.g.
/// "OpenBLAS ZEN" ("unknown" when it is not OpenBLAS).
std::string blas_description();

/// OpenBLAS picks its kernels when it is loaded, from the CPU's model
/// number, and falls back to SSE3 ones ("Prescott") on a CPU it does not
/// know: Debian 12's 0.3.21 does so on Emerald Rapids Xeons, where its
/// products then run at a seventh of their speed (docs/performance.md). For
/// a CPU with AVX2 whose OpenBLAS core `current_core` lacks it, this is the
/// OPENBLAS_CORETYPE to load instead ("SkylakeX" with AVX-512, "Zen" on AMD,
/// "Haswell"); otherwise "".
std::string better_openblas_core(const std::string& current_core, bool cpu_has_avx2, bool cpu_has_avx512,
                                 bool amd);
/// better_openblas_core() for this process: "" unless OpenBLAS is loaded
/// and OPENBLAS_CORETYPE is unset. main() re-executes charrnn with it set,
/// since OpenBLAS reads the variable only when it is loaded.
std::string openblas_core_to_force();

/// Threads one matrix product may use now: OpenBLAS's setting, or
/// LibTorch's intra-op threads with another BLAS (MKL follows them).
int64_t blas_threads();

/// Threads a CPU training step may split its batch over, each running its
/// share single-threaded: current_threads(), or fewer with
/// $CHARRNN_BATCH_THREADS (1 turns the split off).
int64_t batch_threads();

/// This machine's physical memory in bytes (0 if unknown).
double physical_memory_bytes();

/// Throws UsageError naming `what` when `bytes` would take more than 80% of
/// physical memory: refusing before allocating beats dying in the allocator.
/// `advice` says which settings to lower.
void require_memory(double bytes, const std::string& what, const std::string& advice);

/// While alive, CUDA ops of this thread run under bf16 autocast: matrix
/// products and cuDNN's RNNs in bfloat16, softmax and losses in float;
/// parameters, gradients and Adam's state stay float. Restores the previous
/// autocast state when it ends. Inactive when `enabled` is false. LibTorch
/// 1.x and 2.x name autocast's switches differently; this hides which.
class CudaBf16Autocast {
 public:
  explicit CudaBf16Autocast(bool enabled);
  ~CudaBf16Autocast();
  CudaBf16Autocast(const CudaBf16Autocast&) = delete;
  CudaBf16Autocast& operator=(const CudaBf16Autocast&) = delete;

 private:
  bool enabled_ = false;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

}  // namespace charrnn
