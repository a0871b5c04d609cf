#include "charrnn/distributed.h"

#include <cstdlib>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "charrnn/error.h"
#include "charrnn/runtime.h"

#ifdef CHARRNN_WITH_C10D
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace charrnn {

namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

[[maybe_unused]] std::string where(const ProcessGroupOptions& o) {
  return "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
}

}  // namespace

std::optional<ProcessGroupOptions> process_group_from_environment() {
  const int64_t world_size = env_integer("WORLD_SIZE", 1, 1, 1 << 20);
  if (world_size == 1) return std::nullopt;
  ProcessGroupOptions o;
  o.world_size = world_size;
  if (!env("RANK")) throw UsageError("WORLD_SIZE is " + std::to_string(world_size) + " but RANK is not set");
  o.rank = env_integer("RANK", 0, 0, world_size - 1);
  o.local_rank = env_integer("LOCAL_RANK", o.rank, 0, world_size - 1);
  const auto addr = env("MASTER_ADDR");
  if (!addr) throw UsageError("WORLD_SIZE is " + std::to_string(world_size) + " but MASTER_ADDR is not set");
  o.master_addr = *addr;
  if (!env("MASTER_PORT")) throw UsageError("WORLD_SIZE is " + std::to_string(world_size) + " but MASTER_PORT is not set");
  o.master_port = env_integer("MASTER_PORT", 29500, 1, 65535);
  o.interface = env("GLOO_SOCKET_IFNAME").value_or("");
  return o;
}

namespace {

class SingleProcessGroup final : public ProcessGroup {
 public:
  SingleProcessGroup() : ProcessGroup(ProcessGroupOptions{}) {}
  std::function<void()> start_sum(torch::Tensor, const std::string&) override { return [] {}; }
  void broadcast(torch::Tensor, int64_t, const std::string&) override {}
  void barrier(const std::string&) override {}
};

}  // namespace

std::shared_ptr<ProcessGroup> ProcessGroup::single() { return std::make_shared<SingleProcessGroup>(); }

std::vector<bool> ProcessGroup::any_rank(const std::vector<bool>& flags, const std::string& what) {
  if (size() == 1) return flags;
  torch::Tensor raised = torch::zeros({static_cast<int64_t>(flags.size())}, torch::kDouble);
  for (size_t i = 0; i < flags.size(); ++i) raised[static_cast<int64_t>(i)] = flags[i] ? 1.0 : 0.0;
  sum(raised, what);
  std::vector<bool> agreed(flags.size());
  for (size_t i = 0; i < flags.size(); ++i) agreed[i] = raised[static_cast<int64_t>(i)].item<double>() > 0;
  return agreed;
}

std::string ProcessGroup::broadcast_bytes(const std::string& bytes_on_root, const std::string& what) {
  if (size() == 1) return bytes_on_root;
  torch::Tensor size = torch::tensor({static_cast<int64_t>(rank() == 0 ? bytes_on_root.size() : 0)}, torch::kLong);
  broadcast(size, 0, what);
  torch::Tensor data = torch::zeros({size.item<int64_t>()}, torch::kUInt8);
  if (rank() == 0) std::memcpy(data.data_ptr(), bytes_on_root.data(), bytes_on_root.size());
  broadcast(data, 0, what);
  return std::string(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.numel()));
}

std::vector<std::string> ProcessGroup::gather_bytes(const std::string& bytes, const std::string& what) {
  if (size() == 1) return {bytes};
  // a sum where each rank fills only its own row is a gather, and needs only
  // the collective every backend has
  torch::Tensor sizes = torch::zeros({size()}, torch::kLong);
  sizes[rank()] = static_cast<int64_t>(bytes.size());
  sum(sizes, what);
  const int64_t longest = sizes.max().item<int64_t>();
  torch::Tensor rows = torch::zeros({size(), longest}, torch::kInt);  // int: Gloo sums every integer type, bytes included, but int is certain
  int* mine = rows.data_ptr<int>() + rank() * longest;
  for (size_t i = 0; i < bytes.size(); ++i) mine[i] = static_cast<unsigned char>(bytes[i]);
  sum(rows, what);
  std::vector<std::string> out(static_cast<size_t>(size()));
  const auto all = rows.accessor<int, 2>();
  for (int64_t r = 0; r < size(); ++r) {
    std::string& s = out[static_cast<size_t>(r)];
    s.resize(static_cast<size_t>(sizes[r].item<int64_t>()));
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(all[r][static_cast<int64_t>(i)]);
  }
  return out;
}

#ifdef CHARRNN_WITH_C10D

bool distributed_available() { return true; }

namespace {

class GlooProcessGroup final : public ProcessGroup {
 public:
  explicit GlooProcessGroup(const ProcessGroupOptions& options) : ProcessGroup(options) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = static_cast<size_t>(options.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    const std::string rendezvous = options.master_addr + ":" + std::to_string(options.master_port);
    // a missing rank shows up as a timeout in the store or in Gloo's own
    // rendezvous through it; both get the same advice
    const auto not_met = [&](const std::exception& e) {
      return Error(where(options) + ": could not meet the other ranks at " + rendezvous + " within " +
                   std::to_string(options.timeout.count() / 1000) + " s (" + first_line(e.what()) +
                   "); check that every rank is started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE");
    };
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
    } catch (const std::exception& e) {
      throw not_met(e);
    }
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    try {
      if (!options.interface.empty())
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(options.interface));
      else if (is_loopback(options.master_addr))
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    } catch (const std::exception& e) {
      throw Error(where(options) + ": cannot open a Gloo device" +
                  (options.interface.empty() ? std::string() : " on GLOO_SOCKET_IFNAME=" + options.interface) + ": " +
                  first_line(e.what()));
    }
    try {
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(options.rank),
                                                           static_cast<int>(options.world_size), gloo_options);
    } catch (const std::exception& e) {
      throw not_met(e);
    }
  }

  std::function<void()> start_sum(torch::Tensor tensor, const std::string& what) override {
    std::vector<torch::Tensor> tensors{tensor};
    auto work = guarded(what, [&] { return group_->allreduce(tensors); });
    return [this, work, what] { guarded(what, [&] { return work->wait(options_.timeout); }); };
  }

  void broadcast(torch::Tensor tensor, int64_t root, const std::string& what) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = static_cast<int>(root);
    auto work = guarded(what, [&] { return group_->broadcast(tensors, opts); });
    guarded(what, [&] { return work->wait(options_.timeout); });
  }

  void barrier(const std::string& what) override {
    auto work = guarded(what, [&] { return group_->barrier(); });
    guarded(what, [&] { return work->wait(options_.timeout); });
  }

 private:
  static bool is_loopback(const std::string& address) {
    return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
  }
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  // Gloo reports a dead peer as a closed connection and a silent one as a
  // timeout; either way this rank cannot go on alone.
  template <typename F>
  auto guarded(const std::string& what, F&& call) -> decltype(call()) {
    try {
      return call();
    } catch (const c10::Error& e) {
      fail(what, e.what_without_backtrace());
    } catch (const std::exception& e) {
      fail(what, e.what());
    }
  }
  [[noreturn]] void fail(const std::string& what, const std::string& message) const {
    throw Error(where(options_) + " lost contact with the other training processes while " + what + " (" +
                first_line(message) + "); a rank died or stopped answering within " +
                std::to_string(options_.timeout.count() / 1000) +
                " s. Restart every rank with --resume on the last checkpoint (any world size)");
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::shared_ptr<ProcessGroup> ProcessGroup::join(const ProcessGroupOptions& options) {
  return std::make_shared<GlooProcessGroup>(options);
}

#else  // a LibTorch without c10d's Gloo headers

bool distributed_available() { return false; }

std::shared_ptr<ProcessGroup> ProcessGroup::join(const ProcessGroupOptions& options) {
  throw UsageError("WORLD_SIZE is " + std::to_string(options.world_size) +
                   " but this charrnn was built without distributed training (its LibTorch lacks c10d's Gloo "
                   "headers; on Debian install libgloo-dev and rebuild)");
}

#endif

GradientAverager::GradientAverager(std::vector<torch::Tensor> parameters, std::shared_ptr<ProcessGroup> group,
                                   int64_t bucket_bytes)
    : parameters_(std::move(parameters)), group_(std::move(group)) {
  bucket_of_.assign(parameters_.size(), -1);
  slot_of_.assign(parameters_.size(), -1);
  arrived_.assign(parameters_.size(), false);
  if (group_->size() == 1) return;  // nothing to average
  // Backward produces the last layers' gradients first, so buckets are
  // filled from the last parameter backwards: the first bucket to be ready
  // is the first one started.
  std::vector<int64_t> numels;  // per bucket
  for (int64_t i = static_cast<int64_t>(parameters_.size()) - 1; i >= 0; --i) {
    const torch::Tensor& p = parameters_[static_cast<size_t>(i)];
    if (!p.requires_grad()) continue;
    bool start_new = buckets_.empty();
    if (!start_new) {
      const torch::Tensor& first = parameters_[static_cast<size_t>(buckets_.back().parameters.front())];
      start_new = (numels.back() + p.numel()) * static_cast<int64_t>(p.element_size()) > bucket_bytes ||
                  first.scalar_type() != p.scalar_type() || first.device() != p.device();
    }
    if (start_new) {
      buckets_.emplace_back();
      numels.push_back(0);
    }
    Bucket& b = buckets_.back();
    bucket_of_[static_cast<size_t>(i)] = static_cast<int64_t>(buckets_.size()) - 1;
    slot_of_[static_cast<size_t>(i)] = static_cast<int64_t>(b.parameters.size());
    b.parameters.push_back(i);
    b.offsets.push_back(numels.back());
    numels.back() += p.numel();
  }
  for (size_t k = 0; k < buckets_.size(); ++k) {
    const torch::Tensor& first = parameters_[static_cast<size_t>(buckets_[k].parameters.front())];
    buckets_[k].flat = torch::empty({numels[k]}, first.options().requires_grad(false));
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (bucket_of_[i] < 0) continue;
    const int64_t index = static_cast<int64_t>(i);
    hook_ids_.push_back(parameters_[i].register_hook([this, index](torch::Tensor grad) {
      on_gradient(index, grad);
      return torch::Tensor();  // undefined: the gradient itself is unchanged
    }));
  }
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0, h = 0; i < parameters_.size(); ++i)
    if (bucket_of_[i] >= 0) parameters_[i].remove_hook(hook_ids_[h++]);
}

void GradientAverager::begin(const std::vector<double>& control) {
  control_ = torch::tensor(control, torch::kDouble);
  control_wait_ = group_->start_sum(control_, "summing the step's control values");
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int64_t>(b.parameters.size());
    b.wait = nullptr;
  }
  std::fill(arrived_.begin(), arrived_.end(), false);
  next_to_start_ = 0;
  in_step_ = true;
}

void GradientAverager::on_gradient(int64_t parameter, const torch::Tensor& grad) {
  // a backward outside a training step (none today) is not averaged, and a
  // parameter used twice in the graph still reaches its hook once
  if (!in_step_ || arrived_[static_cast<size_t>(parameter)]) return;
  arrived_[static_cast<size_t>(parameter)] = true;
  Bucket& b = buckets_[static_cast<size_t>(bucket_of_[static_cast<size_t>(parameter)])];
  const int64_t slot = slot_of_[static_cast<size_t>(parameter)];
  const int64_t n = parameters_[static_cast<size_t>(parameter)].numel();
  b.flat.narrow(0, b.offsets[static_cast<size_t>(slot)], n).copy_(grad.reshape({-1}));
  if (--b.pending == 0) start_ready_buckets();
}

void GradientAverager::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].pending == 0) {
    Bucket& b = buckets_[next_to_start_];
    b.wait = group_->start_sum(b.flat, "averaging gradients");
    ++next_to_start_;
  }
}

std::vector<double> GradientAverager::finish() {
  // a gradient that did not pass its hook is in .grad (a batch split in
  // parts) or nowhere: a parameter backward did not reach contributes zeros
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    if (b.pending == 0) continue;
    for (size_t s = 0; s < b.parameters.size(); ++s) {
      const auto parameter = static_cast<size_t>(b.parameters[s]);
      if (arrived_[parameter]) continue;
      torch::Tensor slot = b.flat.narrow(0, b.offsets[s], parameters_[parameter].numel());
      const torch::Tensor& grad = parameters_[parameter].grad();
      if (grad.defined()) slot.copy_(grad.reshape({-1}));
      else slot.zero_();
    }
    b.pending = 0;
  }
  start_ready_buckets();
  in_step_ = false;
  control_wait_();
  const double world = static_cast<double>(group_->size());
  for (Bucket& b : buckets_) {
    b.wait();
    b.flat.div_(world);
    for (size_t s = 0; s < b.parameters.size(); ++s) {
      torch::Tensor& p = parameters_[static_cast<size_t>(b.parameters[s])];
      const torch::Tensor averaged = b.flat.narrow(0, b.offsets[s], p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(averaged);
      else p.mutable_grad() = averaged.clone();
    }
  }
  std::vector<double> summed(static_cast<size_t>(control_.numel()));
  for (size_t i = 0; i < summed.size(); ++i) summed[i] = control_[static_cast<int64_t>(i)].item<double>();
  return summed;
}

uint64_t mix_seed(uint64_t base, uint64_t salt) {
  uint64_t z = base + 0x9E3779B97F4A7C15ull * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

bool ranks_share_one_batch_order() {
  const char* value = std::getenv("CHARRNN_TEST_SHARED_BATCH_ORDER");
  return value && std::string(value) == "1";
}

}  // namespace charrnn
