#include "charrnn/serve_engine.h"

#include <algorithm>

#include "charrnn/corpus.h"
#include "charrnn/generate.h"
#include "charrnn/step_decoder.h"

namespace charrnn {

bool ServeStream::read(std::string& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return !pending_.empty() || ended_; });
  out += pending_;
  pending_.clear();
  return !ended_;
}

std::string ServeStream::finish_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reason_;
}

std::chrono::steady_clock::time_point ServeStream::first_char_at() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return first_char_at_;
}

void ServeStream::append(const std::string& text, int64_t chars) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generated_.load() == 0 && chars > 0) first_char_at_ = std::chrono::steady_clock::now();
    generated_ += chars;
    pending_ += text;
  }
  ready_.notify_all();
}

void ServeStream::finish(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ended_) return;
    ended_ = true;
    reason_ = reason;
  }
  ready_.notify_all();
}

struct ServeEngine::Active {
  explicit Active(StreamRequest r)
      : request(std::move(r)), rng(request.seed), filter(request.stop), remaining(request.max_chars),
        stream(std::make_shared<ServeStream>()) {}
  StreamRequest request;
  SampleRng rng;
  StopFilter filter;
  int64_t remaining;
  std::shared_ptr<ServeStream> stream;
  int64_t last_id = 0;
  bool done = false;  // ended; its row is stepped, unread, until the next rebuild
  State primed;       // while joining: the state after its prompt
};

ServeEngine::ServeEngine(const Checkpoint& checkpoint, ServeEngineOptions options)
    : checkpoint_(checkpoint), options_(options) {
  if (options_.slots < 1) throw UsageError("--slots must be >= 1, got " + std::to_string(options_.slots));
  if (options_.queue < 0) throw UsageError("--queue must be >= 0, got " + std::to_string(options_.queue));
  model_ = restore_model(checkpoint_, torch::kCPU);
  model_->eval();
  thread_ = std::thread([this] { loop(); });
}

ServeEngine::~ServeEngine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    exiting_ = true;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::vector<std::shared_ptr<ServeStream>> ServeEngine::submit(std::vector<StreamRequest> requests) {
  std::vector<std::shared_ptr<ServeStream>> streams;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // what waits beyond the free slots must fit in the queue
    const int64_t waiting = static_cast<int64_t>(queue_.size() + requests.size()) - (options_.slots - active());
    if (stopping_ || waiting > options_.queue) return {};
    for (StreamRequest& r : requests) {
      auto a = std::make_unique<Active>(std::move(r));
      streams.push_back(a->stream);
      queue_.push_back(std::move(a));
    }
  }
  wake_.notify_all();
  return streams;
}

int64_t ServeEngine::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

void ServeEngine::drain(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    deadline_ = deadline;
  }
  wake_.notify_all();
  while (active() > 0 || queued() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

void ServeEngine::end(Active& a, const std::string& reason) {
  // the slot is free for submit() before the reader learns the stream ended
  // (and before its row leaves the batch)
  --active_count_;
  a.done = true;
  a.stream->finish(reason);
}

void ServeEngine::emit(Active& a, int64_t id) {
  a.last_id = id;
  std::string piece;
  checkpoint_.vocab.append_decoded(piece, id);
  --a.remaining;
  std::string out = a.filter.feed(piece);
  if (a.filter.stopped()) {
    a.stream->append(out, 1);
    end(a, "stop");
  } else if (a.remaining <= 0) {
    a.stream->append(out + a.filter.flush(), 1);
    end(a, "length");
  } else {
    a.stream->append(out, 1);
  }
}

void ServeEngine::admit(std::vector<std::unique_ptr<Active>>& joining) {
  RowSampler scratch;
  for (auto& a : joining) {
    if (a->stream->cancelled()) {
      end(*a, "cancelled");
      continue;
    }
    if (a->remaining <= 0) {  // max_tokens 0: nothing to generate, nothing drawn
      end(*a, "length");
      continue;
    }
    // as generate() primes one sample, and draws its first character
    std::vector<int64_t> ids = checkpoint_.vocab.encode(a->request.prompt, "prompt");
    Primed primed = prime_model(model_, to_tensor(ids).unsqueeze(0));
    a->primed = primed.state;
    int64_t id = 0;
    sample_into(primed.logits, a->request.sampling, a->rng, scratch, &id);
    emit(*a, id);
  }
}

void ServeEngine::rebuild(std::vector<std::unique_ptr<Active>>& joining) {
  // the surviving rows' states, then the joiners', side by side
  std::vector<std::unique_ptr<Active>> rows;
  std::vector<torch::Tensor> h, c;
  if (decoder_) {
    const State old = decoder_->state();
    std::vector<int64_t> kept;
    for (size_t r = 0; r < active_.size(); ++r)
      if (!active_[r]->done) {
        kept.push_back(static_cast<int64_t>(r));
        rows.push_back(std::move(active_[r]));
      }
    if (!kept.empty()) {
      const torch::Tensor index = torch::tensor(kept, torch::kLong);
      h.push_back(old.h.index_select(1, index));
      if (old.c.defined()) c.push_back(old.c.index_select(1, index));
    }
  }
  for (auto& a : joining)
    if (!a->done) {
      h.push_back(a->primed.h);
      if (a->primed.c.defined()) c.push_back(a->primed.c);
      a->primed = State();
      rows.push_back(std::move(a));
    }
  active_ = std::move(rows);
  if (active_.empty()) {
    decoder_.reset();
    return;
  }
  // a lone stream gets a padding row: two rows or more run the packed row
  // kernel, so its text does not depend on whether it is alone
  if (active_.size() == 1) {
    h.push_back(torch::zeros_like(h.front()));
    if (!c.empty()) c.push_back(torch::zeros_like(c.front()));
  }
  State state{torch::cat(h, 1), c.empty() ? torch::Tensor() : torch::cat(c, 1)};
  const int64_t batch = state.h.size(1);
  decoder_ = std::make_unique<StepDecoder>(*model_, batch, options_.threads);
  decoder_->set_state(state);
  scratch_.assign(static_cast<size_t>(decoder_->parts()), RowSampler());
  ids_.assign(static_cast<size_t>(batch), 0);
  next_.assign(static_cast<size_t>(batch), 0);
  uniforms_.assign(static_cast<size_t>(batch), 0.0f);
  ++rebuilds_;
}

void ServeEngine::step() {
  const size_t n = active_.size();
  for (size_t r = 0; r < n; ++r) {
    Active& a = *active_[r];
    ids_[r] = a.last_id;
    // one uniform per step, as generate() draws it for its one sample
    if (!a.done && !is_greedy(a.request.sampling)) uniforms_[r] = a.rng.next_uniform();
  }
  decoder_->for_each_part([&](int64_t part, int64_t first, int64_t rows) {
    decoder_->step_part(part, ids_.data());
    for (int64_t r = first; r < first + rows; ++r) {
      if (static_cast<size_t>(r) >= n || active_[static_cast<size_t>(r)]->done) continue;
      sample_rows_into(decoder_->logits().narrow(0, r, 1), active_[static_cast<size_t>(r)]->request.sampling,
                       uniforms_.data() + r, scratch_[static_cast<size_t>(part)], next_.data() + r);
    }
  });
  for (size_t r = 0; r < n; ++r)
    if (!active_[r]->done) emit(*active_[r], next_[r]);
  ++steps_;
}

void ServeEngine::loop() {
  torch::NoGradGuard no_grad;  // grad mode is per thread
  while (true) {
    std::vector<std::unique_ptr<Active>> joining;
    int64_t live = 0;
    for (auto& a : active_)
      if (!a->done && a->stream->cancelled()) end(*a, "cancelled");
    for (auto& a : active_) live += a->done ? 0 : 1;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return exiting_ || !queue_.empty() || live > 0; });
      if (exiting_ || std::chrono::steady_clock::now() >= deadline_) {
        // stopping: what is left ends now, each with its last text
        for (auto& a : queue_) a->stream->finish("length");
        queue_.clear();
        for (auto& a : active_)
          if (!a->done) {
            a->stream->append(a->filter.flush(), 0);
            end(*a, "length");
          }
        active_.clear();
        decoder_.reset();
        if (exiting_) return;
        continue;
      }
      while (!queue_.empty() && live + static_cast<int64_t>(joining.size()) < options_.slots) {
        joining.push_back(std::move(queue_.front()));
        queue_.pop_front();
        ++active_count_;  // it holds a slot from now until it ends
      }
    }
    admit(joining);
    int64_t joined = 0, finished = 0;
    for (auto& a : joining) joined += a->done ? 0 : 1;
    for (auto& a : active_) finished += a->done ? 1 : 0;
    live = 0;
    for (auto& a : active_) live += a->done ? 0 : 1;
    // finished rows are stepped unread until enough of them make a rebuild worth it
    if (joined > 0 || (finished > 0 && (live == 0 || finished * 4 >= static_cast<int64_t>(active_.size()))))
      rebuild(joining);
    if (decoder_) step();
  }
}

}  // namespace charrnn
