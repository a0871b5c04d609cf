// charrnn_kernel_bench: the recurrent product on the shapes training and
// batched generation run, one thread, for each kernel charrnn has and for
// the libraries that could do the job instead: OpenBLAS through LibTorch (what
// the parts would run without PackedWeight, its repacking of W included),
// and, when they were found at configure time, libxsmm's JIT kernels, BLIS
// and oneDNN's sgemm (benchmarks/kernels.sh installs them). Rounds alternate
// between the implementations and every round is printed, next to the
// median, because shared machines are noisy.
//
//   charrnn_kernel_bench [ROUNDS] [SECONDS_PER_MEASUREMENT]
//
// Shapes (row-major c (M, N) += a (M, K) b (K, N)): a 16- or 32-row share of
// the batch against W_hh^T of LSTM 2x256 (forward, K=256, N=1024) and W_hh
// (backward, K=1024, N=256); a 32-stream part of the 64-stream decoder
// against its stacked layer weights (K = 64+256 and 256+256, N = 1024).
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "charrnn/kernels/isa.h"
#include "charrnn/kernels/packed_weight.h"
#include "charrnn/runtime.h"

#ifdef CHARRNN_HAVE_LIBXSMM
#include <libxsmm.h>
#endif
#ifdef CHARRNN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
using charrnn::PackedWeight;

struct Shape {
  const char* what;
  int64_t M, K, N;
};

struct Impl {
  std::string name;
  std::function<void()> run;
};

// BLIS is opened with RTLD_LOCAL: linked normally, its BLAS symbols
// (sgemm_) would take LibTorch's products away from OpenBLAS.
using BliSgemm = void (*)(int, int, long, long, long, const float*, const float*, long, long, const float*, long,
                          long, const float*, float*, long, long);
BliSgemm open_blis() {
#ifdef CHARRNN_BLIS_LIBRARY
  void* handle = ::dlopen(CHARRNN_BLIS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!handle) return nullptr;
  using SetThreads = void (*)(long);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(handle, "bli_thread_set_num_threads"))) set(1);
  return reinterpret_cast<BliSgemm>(::dlsym(handle, "bli_sgemm"));
#else
  return nullptr;
#endif
}

double seconds_per_call(const std::function<void()>& f, double budget) {
  f();
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    f();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < budget);
  return elapsed / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const double budget = argc > 2 ? std::max(0.01, std::atof(argv[2])) : 0.3;
  charrnn::configure_threads(1);  // one BLAS thread: each part of the batch split runs on one core
  torch::manual_seed(1);
  std::printf("cpu isa %s, kernels capped at %s, BLAS %s; GFLOP/s on one thread, median of %d rounds\n",
              charrnn::to_string(charrnn::cpu_isa()), charrnn::to_string(charrnn::kernel_isa()),
              charrnn::blas_description().c_str(), rounds);
  const BliSgemm bli_sgemm = open_blis();
  const std::vector<Shape> shapes = {{"train forward, 16-row share", 16, 256, 1024},
                                     {"train forward, 32-row share", 32, 256, 1024},
                                     {"train backward, 16-row share", 16, 1024, 256},
                                     {"decoder layer 0, 32 streams", 32, 320, 1024},
                                     {"decoder layer 1, 32 streams", 32, 512, 1024}};
  for (const Shape& s : shapes) {
    const torch::Tensor a = torch::randn({s.M, s.K}), b = torch::randn({s.K, s.N});
    torch::Tensor c = torch::zeros({s.M, s.N});
    const torch::Tensor reference = a.to(torch::kDouble).mm(b.to(torch::kDouble));
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    float* pc = c.data_ptr<float>();
    std::vector<Impl> impls;
    impls.push_back({"openblas (libtorch mm)", [&] { torch::mm_out(c, a, b); }});
    std::vector<std::unique_ptr<PackedWeight>> packed;
    for (const auto kernel : {PackedWeight::Kernel::Avx512, PackedWeight::Kernel::Avx2, PackedWeight::Kernel::Portable}) {
      if (!PackedWeight::supported(kernel)) continue;
      packed.push_back(std::make_unique<PackedWeight>(b, kernel));
      const PackedWeight* w = packed.back().get();
      impls.push_back({std::string("charrnn ") + PackedWeight::describe(kernel),
                       [w, &a, &c] { w->multiply(a, c, /*accumulate=*/false); }});
    }
#ifdef CHARRNN_HAVE_LIBXSMM
    // column-major: c^T (N, M) = b^T (N, K) a^T (K, M), in 64-column blocks
    // of N, as libxsmm is made for small products
    const libxsmm_blasint block = 64, lda = s.N, ldb = s.K, ldc = s.N;
    const float alpha = 1, beta = 0;
    const libxsmm_smmfunction xsmm = libxsmm_smmdispatch(static_cast<libxsmm_blasint>(std::min<int64_t>(block, s.N)),
                                                         s.M, s.K, &lda, &ldb, &ldc, &alpha, &beta, nullptr, nullptr);
    if (xsmm && s.N % block == 0)
      impls.push_back({"libxsmm 1.17 JIT, 64-column blocks", [=] {
                         for (int64_t n = 0; n < s.N; n += block) xsmm(pb + n, pa, pc + n);
                       }});
#endif
    if (bli_sgemm) {
      const float one = 1, zero = 0;
      impls.push_back({"blis 0.9 bli_sgemm", [=] {
                         bli_sgemm(/*BLIS_NO_TRANSPOSE*/ 0, 0, s.M, s.N, s.K, &one, pa, s.K, 1, pb, s.N, 1, &zero, pc,
                                   s.N, 1);
                       }});
    }
#ifdef CHARRNN_HAVE_DNNL
    impls.push_back({"onednn 2.6 dnnl_sgemm", [=] {
                       dnnl_sgemm('N', 'N', s.M, s.N, s.K, 1.0f, pa, s.K, pb, s.N, 0.0f, pc, s.N);
                     }});
#endif
    std::vector<std::vector<double>> gflops(impls.size());
    for (size_t i = 0; i < impls.size(); ++i) {  // each must compute the product
      c.zero_();
      impls[i].run();
      const double error = (c.to(torch::kDouble) - reference).abs().max().item<double>() /
                           std::max(1.0, reference.abs().max().item<double>());
      if (error > 1e-4) {
        std::printf("  %s gives a wrong product (relative error %.2g); left out\n", impls[i].name.c_str(), error);
        impls[i].run = nullptr;
      }
    }
    const double flops = 2.0 * static_cast<double>(s.M * s.K * s.N);
    for (int round = 0; round < rounds; ++round)
      for (size_t i = 0; i < impls.size(); ++i)
        if (impls[i].run) gflops[i].push_back(flops / seconds_per_call(impls[i].run, budget) / 1e9);
    std::printf("\n%s: (%lld x %lld) x (%lld x %lld)\n", s.what, static_cast<long long>(s.M),
                static_cast<long long>(s.K), static_cast<long long>(s.K), static_cast<long long>(s.N));
    for (size_t i = 0; i < impls.size(); ++i) {
      if (!impls[i].run) continue;
      std::vector<double> sorted = gflops[i];
      std::sort(sorted.begin(), sorted.end());
      std::printf("  %-44s %6.1f  rounds:", impls[i].name.c_str(), sorted[sorted.size() / 2]);
      for (const double g : gflops[i]) std::printf(" %.1f", g);
      std::printf("\n");
    }
  }
  return 0;
}
