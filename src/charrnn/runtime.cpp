#include "charrnn/runtime.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <iomanip>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "charrnn/error.h"
#include "charrnn/kernels/isa.h"

namespace charrnn {

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw UsageError("device \"" + name +
                       "\" requested, but CUDA is not available (this LibTorch build or machine has no GPU); "
                       "use --set train.device=cpu or auto");
    torch::Device device(torch::kCUDA);
    try {
      device = torch::Device(name);
    } catch (const c10::Error&) {
      throw UsageError("device \"" + name + "\" is not a valid device name; use cuda or cuda:N");
    }
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
      throw UsageError("device \"" + name + "\" requested, but only " +
                       std::to_string(torch::cuda::device_count()) + " CUDA device(s) exist");
    return device;
  }
  throw UsageError("device must be auto, cpu, cuda or cuda:N; got \"" + name + "\"");
}

torch::Device resolve_device(const std::string& name, int64_t local_rank) {
  const torch::Device device = resolve_device(name);
  if (!device.is_cuda() || device.has_index()) return device;
  return torch::Device(torch::kCUDA,
                       static_cast<c10::DeviceIndex>(local_rank % std::max<int64_t>(1, torch::cuda::device_count())));
}

torch::Tensor global_cpu_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }

void set_global_cpu_rng_state(const torch::Tensor& state) {
  try {
    at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the shared generator
    global.set_state(state);
  } catch (const c10::Error& e) {
    throw Error(std::string("checkpoint holds an invalid random state: ") + e.what_without_backtrace());
  }
}

namespace {
int64_t g_threads = 1;
}  // namespace

void configure_threads(int64_t threads) {
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  if (threads <= 0) threads = env_integer("CHARRNN_THREADS", cores, 1, INT64_MAX);
  // Measured on 2 cores (LSTM 2x256, batch 32x128, docs/performance.md):
  // OpenBLAS with every thread and LibTorch's OpenMP pool at one thread was
  // fastest; both pools at two threads ran 5-8x slower, because OpenMP
  // workers spin-wait on the cores OpenBLAS needs. The time goes into matrix
  // products, so the threads go to OpenBLAS.
  torch::set_num_threads(static_cast<int>(env_integer("CHARRNN_TORCH_THREADS", 1, 1, INT64_MAX)));
  set_blas_threads(threads);
  g_threads = threads;
  kernel_isa();  // a bad CHARRNN_ISA is a usage error now, not in the middle of a step
  keep_freed_memory_for_reuse();
}

void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return;
  // 32 MiB is the largest threshold glibc accepts (half its 64 MiB heap).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

void set_blas_threads(int64_t threads) {
  // OpenBLAS is looked up at run time so that charrnn also links against a
  // LibTorch that bundles MKL or another BLAS.
  using SetThreads = void (*)(int);
  static const auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set) set(static_cast<int>(threads));
}

namespace {

// OpenBLAS's name for the kernel set it loaded; nullptr when the BLAS is not OpenBLAS.
const char* openblas_corename() {
  using GetName = char* (*)();
  static const auto corename = reinterpret_cast<GetName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? corename() : nullptr;
}

}  // namespace

std::string blas_description() {
  const char* core = openblas_corename();
  return core ? std::string("OpenBLAS ") + core : "unknown";
}

std::string better_openblas_core(const std::string& current_core, bool cpu_has_avx2, bool cpu_has_avx512,
                                 bool amd) {
  if (!cpu_has_avx2) return "";
  std::string core;
  for (const char c : current_core) core += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // OpenBLAS's core names with AVX2 kernels (openblas_get_corename() spellings)
  for (const char* good : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"})
    if (core == good) return "";
  if (cpu_has_avx512) return "SkylakeX";
  return amd ? "Zen" : "Haswell";
}

std::string openblas_core_to_force() {
  const char* core = openblas_corename();
  if (!core || std::getenv("OPENBLAS_CORETYPE")) return "";  // not OpenBLAS, or the user chose
  const Isa isa = cpu_isa();
  return better_openblas_core(core, isa >= Isa::Avx2, isa >= Isa::Avx512, __builtin_cpu_is("amd"));
}

int64_t blas_threads() {
  using GetThreads = int (*)();
  static const auto get = reinterpret_cast<GetThreads>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get ? get() : at::get_num_threads();
}

int64_t batch_threads() {
  // CHARRNN_BATCH_THREADS=1 turns the split off, for measurements
  return std::min(current_threads(), env_integer("CHARRNN_BATCH_THREADS", current_threads(), 1, INT64_MAX));
}

int64_t current_threads() { return g_threads; }

int64_t env_integer(const char* name, int64_t fallback, int64_t min, int64_t max) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || value < min || value > max)
    throw UsageError(std::string(name) + " must be an integer " +
                     (max == INT64_MAX ? ">= " + std::to_string(min)
                                       : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]") +
                     ", got \"" + text + "\"");
  return value;
}

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 0.0;
}

void require_memory(double bytes, const std::string& what, const std::string& advice) {
  const double physical = physical_memory_bytes();
  if (physical <= 0 || bytes <= 0.8 * physical) return;
  std::ostringstream msg;
  msg << std::fixed << std::setprecision(1) << what << " needs about " << bytes / 1e9
      << " GB, more than this machine's " << physical / 1e9 << " GB of memory can give; " << advice;
  throw UsageError(msg.str());
}

// LibTorch 2.4 gave autocast one switch per device type and deprecated the
// CUDA-only names that 1.x has.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CHARRNN_AUTOCAST_PER_DEVICE 1
#endif

CudaBf16Autocast::CudaBf16Autocast(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
#ifdef CHARRNN_AUTOCAST_PER_DEVICE
  was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  was_enabled_ = at::autocast::is_enabled();
  previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(true);
#endif
  at::autocast::increment_nesting();
}

CudaBf16Autocast::~CudaBf16Autocast() {
  if (!enabled_) return;
  // autocast caches the bf16 copies of the weights for its outermost scope;
  // they are stale once the optimizer steps
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef CHARRNN_AUTOCAST_PER_DEVICE
  at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
  at::autocast::set_enabled(was_enabled_);
  at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
}

}  // namespace charrnn
