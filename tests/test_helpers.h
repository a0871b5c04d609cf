// Small helpers shared by the unit tests: a fresh temporary folder per test,
// file writing, checks on exception messages, and Adam state comparison.
#pragma once

#include <ftw.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/kernels/isa.h"
#include "charrnn/model.h"
#include "charrnn/utf8.h"

namespace charrnn_test {

/// Deletes `path` and everything under it, quietly (a missing path is fine).
/// Not std::filesystem::remove_all: PyTorch's pip LibTorch exports its own
/// copy of that function, which crashes when a program built with another
/// GCC binds to it (seen with torch 2.11 and GCC 13).
inline void remove_tree(const std::string& path) {
  const auto remove_entry = [](const char* entry, const struct stat*, int, struct FTW*) {
    std::remove(entry);  // children come first (FTW_DEPTH); a failure leaves the rest to try
    return 0;
  };
  ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/// Caps charrnn's kernels at `isa` while alive (kernels/isa.h), then puts back the
/// cap in force before, $CHARRNN_ISA's included.
class ScopedKernelIsa {
 public:
  explicit ScopedKernelIsa(charrnn::Isa isa) : previous_(charrnn::kernel_isa()) { charrnn::cap_kernel_isa(isa); }
  ~ScopedKernelIsa() { charrnn::cap_kernel_isa(previous_); }
  ScopedKernelIsa(const ScopedKernelIsa&) = delete;
  ScopedKernelIsa& operator=(const ScopedKernelIsa&) = delete;

 private:
  charrnn::Isa previous_;
};

/// Every instruction set charrnn has kernels for, narrowest first.
inline std::vector<charrnn::Isa> all_isas() {
  return {charrnn::Isa::Generic, charrnn::Isa::Avx2, charrnn::Isa::Avx512};
}

/// A fresh, empty folder under the system temp dir, removed on destruction.
/// The name holds the pid and the test's name, so tests run in parallel
/// (ctest -j) never share one.
// 1-, 2-, 3- and 4-byte characters, written as explicit bytes.
namespace utf8_samples {
inline const std::string kE_acute = "\xC3\xA9";       // U+00E9 é
inline const std::string kEuro = "\xE2\x82\xAC";      // U+20AC €
inline const std::string kGrin = "\xF0\x9F\x98\x80";  // U+1F600 😀
}  // namespace utf8_samples

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "charrnn-unit-" + std::to_string(::getpid());
    if (info) name += std::string("-") + info->test_suite_name() + "-" + info->name();
    for (char& ch : name)
      if (ch == '/') ch = '_';
    path_ = std::filesystem::temp_directory_path() / name;
    remove_tree(path_.string());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { remove_tree(path_.string()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The short string the training tests repeat, and a config that learns it
/// within a few hundred steps: corpus.txt in `dir` (written once), the
/// checkpoint in `dir`/`name`/. On the CPU: bit-identical resumes are a
/// CPU promise; GPU tests set train.device themselves.
inline const std::string kPattern = "hello world, abc ";

inline charrnn::Config small_config(const TempDir& dir, const std::string& name, charrnn::CellType cell,
                                    int64_t layers, double dropout, int64_t steps, int64_t eval_every) {
  const std::string corpus = dir.file("corpus.txt");
  if (!std::filesystem::exists(corpus)) {
    std::string text;
    while (text.size() < 3000) text += kPattern;
    write_file(corpus, text);
  }
  charrnn::Config c;
  c.data.path = {corpus};
  c.data.val_fraction = 0.1;
  c.model.cell = cell;
  c.model.embedding_dim = 16;
  c.model.hidden_size = 64;
  c.model.num_layers = layers;
  c.model.dropout = dropout;
  c.train.batch_size = 16;
  c.train.seq_length = 32;
  c.train.learning_rate = 0.01;
  // the plain recipe these tests were written for, not the built-in one
  c.train.batching = charrnn::Batching::Random;
  c.train.lr_schedule = charrnn::LrSchedule::Constant;
  c.train.warmup_steps = 0;
  c.train.min_lr = 0;
  c.train.weight_decay = 0;
  c.train.steps = steps;
  c.train.eval_every = eval_every;
  c.train.seed = 42;
  c.train.device = "cpu";
  c.train.checkpoint = dir.file(name + "/model.pt");
  c.sample.length = 20;
  return c;
}

/// A checkpoint of an untrained model over the characters of `text` (UTF-8),
/// its weights drawn with `seed` and multiplied by `scale`: larger weights
/// than the default init make the logits sharper, so every gate matters and
/// sampled text exercises many ids. What the export tests compare against.
struct RandomModel {
  charrnn::CellType cell = charrnn::CellType::LSTM;
  int64_t layers = 2;
  int64_t embedding_dim = 6;
  int64_t hidden_size = 8;
  std::string text = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 abc\n\"\\";  // é€😀 abc, a newline, a quote, a backslash
  double scale = 2.0;
  uint64_t seed = 5;
};
inline charrnn::Checkpoint random_checkpoint(const RandomModel& m) {
  torch::manual_seed(m.seed);
  charrnn::Checkpoint c;
  c.config.model.cell = m.cell;
  c.config.model.embedding_dim = m.embedding_dim;
  c.config.model.hidden_size = m.hidden_size;
  c.config.model.num_layers = m.layers;
  c.vocab = charrnn::Vocab::from_text(charrnn::decode_utf8(m.text));
  charrnn::CharRNN model(c.vocab.size(), c.config.model);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.mul_(m.scale);
  }
  c.model_bytes = charrnn::archive_module(*model);
  return c;
}

/// Runs `f`, expecting it to throw E (or a subclass); returns the message.
/// Records a failure (and returns "") when it throws nothing or something else.
template <typename E, typename F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

/// cuDNN may round float products to TF32 (LibTorch's default, as
/// PyTorch's); comparing cuDNN with another implementation needs full float.
class FullFloatCudnn {
 public:
  FullFloatCudnn() : previous_(at::globalContext().allowTF32CuDNN()) { at::globalContext().setAllowTF32CuDNN(false); }
  ~FullFloatCudnn() { at::globalContext().setAllowTF32CuDNN(previous_); }
  FullFloatCudnn(const FullFloatCudnn&) = delete;
  FullFloatCudnn& operator=(const FullFloatCudnn&) = delete;

 private:
  bool previous_;
};

// An optimizer's per-parameter state is keyed by the parameter's TensorImpl:
// as its printed address in LibTorch 1.x, as the pointer itself in 2.x.
template <typename StateMap>
auto find_optimizer_state(const StateMap& states, const torch::Tensor& parameter) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>)
    return states.find(c10::str(parameter.unsafeGetTensorImpl()));
  else
    return states.find(parameter.unsafeGetTensorImpl());
}

/// Compares two archived Adam states by value. Their bytes are not
/// comparable: LibTorch writes the per-parameter states in hash-map order,
/// which depends on tensor addresses.
inline void expect_same_adam_state(const std::string& a_bytes, const std::string& b_bytes, int64_t vocab_size,
                                   const charrnn::ModelOptions& options) {
  charrnn::CharRNN model_a(vocab_size, options), model_b(vocab_size, options);
  torch::optim::Adam a(model_a->parameters(), torch::optim::AdamOptions());
  torch::optim::Adam b(model_b->parameters(), torch::optim::AdamOptions());
  charrnn::restore_optimizer(a, a_bytes, torch::kCPU);
  charrnn::restore_optimizer(b, b_bytes, torch::kCPU);
  const auto pa = model_a->parameters();
  const auto pb = model_b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto sa = find_optimizer_state(a.state(), pa[i]);
    const auto sb = find_optimizer_state(b.state(), pb[i]);
    ASSERT_TRUE(sa != a.state().end()) << "no Adam state for parameter " << i;
    ASSERT_TRUE(sb != b.state().end()) << "no Adam state for parameter " << i;
    const auto& x = static_cast<const torch::optim::AdamParamState&>(*sa->second);
    const auto& y = static_cast<const torch::optim::AdamParamState&>(*sb->second);
    EXPECT_EQ(x.step(), y.step()) << "parameter " << i;
    EXPECT_TRUE(torch::equal(x.exp_avg(), y.exp_avg())) << "parameter " << i;
    EXPECT_TRUE(torch::equal(x.exp_avg_sq(), y.exp_avg_sq())) << "parameter " << i;
  }
}

}  // namespace charrnn_test

namespace charrnn {
/// Test names and failure messages show "lstm", not "4-byte object <02-00 00-00>".
inline void PrintTo(CellType cell, std::ostream* os) { *os << to_string(cell); }
}  // namespace charrnn

/// EXPECT that `haystack` contains `needle`, printing both when it does not.
#define EXPECT_CONTAINS(haystack, needle)                                                     \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos)                            \
      << "expected to find [" << (needle) << "] in [" << (haystack) << "]"
