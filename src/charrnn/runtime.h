// Process-wide runtime choices: which device to use and how many CPU threads.
#pragma once

#include <string>

#include <torch/torch.h>

namespace charrnn {

/// "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
/// Throws UsageError when CUDA is asked for but this build or machine lacks it.
torch::Device resolve_device(const std::string& name);

/// Sets LibTorch's intra-op threads to `threads` (0 = all cores) and pins
/// OpenBLAS to one thread. Both pools spinning on the same cores made matrix
/// products up to 10x slower on 2 cores; LibTorch's own parallelism covers
/// the element-wise work, and OpenBLAS is called from inside it.
void configure_threads(int64_t threads);

/// Threads LibTorch uses now.
int64_t current_threads();

}  // namespace charrnn
