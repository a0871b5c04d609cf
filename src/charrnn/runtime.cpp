#include "charrnn/runtime.h"

#include <dlfcn.h>
#include <thread>

#include "charrnn/error.h"

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

void configure_threads(int64_t threads) {
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(threads > 0 ? threads : cores));
  // OpenBLAS is found at run time so that charrnn also links against a
  // LibTorch that bundles MKL or another BLAS.
  using SetThreads = void (*)(int);
  if (auto set_blas_threads = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_blas_threads(1);
}

int64_t current_threads() { return torch::get_num_threads(); }

}  // namespace charrnn
