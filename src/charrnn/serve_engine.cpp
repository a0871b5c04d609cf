#include "charrnn/serve_engine.h"

#include <algorithm>

#include "charrnn/cell.h"
#include "charrnn/error.h"
#include "charrnn/generate.h"
#include "charrnn/step_decoder.h"
#include "charrnn/utf8.h"

namespace charrnn {

bool ServeStream::read(std::string& out, std::chrono::milliseconds timeout, std::vector<TokenLogprob>* logprobs) {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return !pending_.empty() || ended_; });
  out += pending_;
  pending_.clear();
  if (logprobs) logprobs->insert(logprobs->end(), pending_logprobs_.begin(), pending_logprobs_.end());
  pending_logprobs_.clear();
  return !ended_;
}

bool ServeStream::wait_ended(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return ended_ || end_.wait_for(lock, timeout, [&] { return ended_; });
}

std::string ServeStream::finish_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reason_;
}

std::chrono::steady_clock::time_point ServeStream::first_char_at() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return first_char_at_;
}

void ServeStream::append(const std::string& text, int64_t chars, const TokenLogprob* logprobs, size_t count) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generated_.load() == 0 && chars > 0) first_char_at_ = std::chrono::steady_clock::now();
    generated_ += chars;
    pending_ += text;
    pending_logprobs_.insert(pending_logprobs_.end(), logprobs, logprobs + count);
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
  end_.notify_all();
}

struct ServeEngine::Active {
  Active(StreamRequest r, std::vector<int64_t> ids)
      : request(std::move(r)), prompt_ids(std::move(ids)), rng(request.seed), filter(request.stop),
        remaining(request.max_chars), stream(std::make_shared<ServeStream>()) {}
  StreamRequest request;
  std::vector<int64_t> prompt_ids;
  SampleRng rng;
  StopFilter filter;
  int64_t remaining;
  std::shared_ptr<ServeStream> stream;
  size_t read = 0;     // prompt characters read (prefill)
  bool draws = false;  // draws a character from this step's logits (prefill: its prompt's last one is read)
  int64_t last_id = 0;
  bool done = false;   // ended; its row is stepped, unread, until the next rebuild
  State primed;        // between the batches: the state after its prompt
  // logprobs: the scores of this step's character (drawn, or the prompt's
  // next when `scores_prompt`), then those of the characters the stop
  // filter holds back, in order
  bool reports() const { return request.logprobs >= 0; }
  bool scores_prompt = false;  // prefill: this step's logits score the prompt's next character (echo)
  TokenLogprob scored;
  std::vector<TokenLogprob> held;
};

// A decoder and its streams, one per row. A row without a running stream
// (null, or a stream that ended) is free: it is stepped unread until a
// joining stream takes it, so a stream joins or leaves without a new
// decoder. A new one is built, with room to spare, only when the rows run
// out or half of them are free.
struct ServeEngine::Batch {
  std::unique_ptr<StepDecoder> decoder;
  std::vector<std::unique_ptr<Active>> rows;  // as many as the decoder has
  std::vector<RowSampler> scratch;  // one per decoder part
  std::vector<int64_t> ids, next;
  std::vector<float> uniforms;

  static bool running(const std::unique_ptr<Active>& a) { return a && !a->done; }
  int64_t live() const {
    return std::count_if(rows.begin(), rows.end(), [](const auto& a) { return running(a); });
  }
  int64_t capacity() const { return static_cast<int64_t>(rows.size()); }
  // Rows for `streams`: at least two, so that a lone stream runs the packed
  // row kernel as it does among others and its text does not depend on
  // whether it is alone; powers of two up to 8, then multiples of 8, so
  // that streams arriving one by one rarely need a new decoder.
  static int64_t capacity_for(int64_t streams) {
    if (streams <= 2) return 2;
    if (streams <= 8) return streams <= 4 ? 4 : 8;
    return (streams + 7) / 8 * 8;
  }
  bool worth_shrinking() const {
    const int64_t c = capacity(), l = live();
    return c > 2 && l * 2 <= c && capacity_for(l) < c;
  }
};

ServeEngine::ServeEngine(const Checkpoint& checkpoint, ServeEngineOptions options)
    : checkpoint_(checkpoint), options_(options), generating_(std::make_unique<Batch>()),
      prefilling_(std::make_unique<Batch>()) {
  if (options_.slots < 1) throw UsageError("--slots must be >= 1, got " + std::to_string(options_.slots));
  if (options_.queue < 0) throw UsageError("--queue must be >= 0, got " + std::to_string(options_.queue));
  model_ = restore_model(checkpoint_, torch::kCPU);
  model_->eval();
  weights_ = std::make_shared<const DecoderWeights>(*model_, /*several_streams=*/true);
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
  // checked here, on the caller's thread: a bad prompt throws to the caller
  std::vector<std::vector<int64_t>> prompts;
  for (const StreamRequest& r : requests) {
    if (r.prompt.empty()) throw UsageError("a stream needs a prompt of at least one character");
    prompts.push_back(checkpoint_.vocab.encode(r.prompt, "prompt"));
  }
  std::vector<std::shared_ptr<ServeStream>> streams;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // what waits beyond the free slots must fit in the queue
    const int64_t waiting = static_cast<int64_t>(queue_.size() + requests.size()) - (options_.slots - active());
    if (stopping_ || waiting > options_.queue) return {};
    for (size_t i = 0; i < requests.size(); ++i) {
      auto a = std::make_unique<Active>(std::move(requests[i]), std::move(prompts[i]));
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

void ServeEngine::stop_taking() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
}

void ServeEngine::drain(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    deadline_ = std::min(deadline_, deadline);  // a second call may end it sooner, never later
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

void ServeEngine::end_all(Batch& batch) {
  for (auto& a : batch.rows)
    if (Batch::running(a)) {
      release(*a, a->filter.flush(), 0);
      end(*a, "length");
    }
  batch.rows.clear();
  batch.decoder.reset();
}

int64_t ServeEngine::sweep(Batch& batch) {
  for (auto& a : batch.rows)
    if (Batch::running(a) && a->stream->cancelled()) end(*a, "cancelled");
  return batch.live();
}

namespace {

// Characters (code points) in UTF-8 `text`: those the stop filter released.
size_t code_points(const std::string& text) {
  return static_cast<size_t>(
      std::count_if(text.begin(), text.end(), [](char byte) { return (static_cast<unsigned char>(byte) & 0xC0) != 0x80; }));
}

}  // namespace

void ServeEngine::release(Active& a, const std::string& text, int64_t generated) {
  if (!a.reports()) return a.stream->append(text, generated);
  // a stop string starts on a character boundary, so what the filter
  // releases is whole characters, the oldest it holds
  const size_t count = std::min(code_points(text), a.held.size());
  a.stream->append(text, generated, a.held.data(), count);
  a.held.erase(a.held.begin(), a.held.begin() + static_cast<std::ptrdiff_t>(count));
}

void ServeEngine::emit(Active& a, int64_t id) {
  a.last_id = id;
  std::string piece;
  checkpoint_.vocab.append_decoded(piece, id);
  --a.remaining;
  if (a.reports()) a.held.push_back(a.scored);
  std::string out = a.filter.feed(piece);
  if (a.filter.stopped()) {
    release(a, out, 1);  // the stop string's characters go, with their scores
    end(a, "stop");
  } else if (a.remaining <= 0) {
    release(a, out + a.filter.flush(), 1);
    end(a, "length");
  } else {
    release(a, out, 1);
  }
}

void ServeEngine::start_echo(Active& a) {
  if (!a.request.echo) return;
  if (!a.reports()) return a.stream->append(encode_utf8(a.request.prompt), 0);
  // the first character, which nothing predicts; the prefill batch scores
  // each of the others as it reads up to it
  TokenLogprob first;
  first.id = static_cast<int32_t>(a.prompt_ids.front());
  std::string text;
  checkpoint_.vocab.append_decoded(text, a.prompt_ids.front());
  a.stream->append(text, 0, &first, 1);
}

void ServeEngine::join(Batch& batch, std::vector<std::unique_ptr<Active>>& joining) {
  joining.erase(std::remove_if(joining.begin(), joining.end(), [](const auto& a) { return !Batch::running(a); }),
                joining.end());
  if (joining.empty()) return;
  if (batch.capacity() - batch.live() < static_cast<int64_t>(joining.size())) return rebuild(batch, joining);
  size_t row = 0;
  for (auto& a : joining) {
    while (Batch::running(batch.rows[row])) ++row;
    batch.decoder->set_row_state(static_cast<int64_t>(row), a->primed);  // zeros before a prompt
    a->primed = State();
    batch.rows[row] = std::move(a);
  }
  joining.clear();
}

void ServeEngine::rebuild(Batch& batch, std::vector<std::unique_ptr<Active>>& joining) {
  // the running rows' states, then the joiners' (zeros before a prompt), side by side
  std::vector<std::unique_ptr<Active>> rows;
  std::vector<torch::Tensor> h, c;
  const bool has_c = cell_facts(checkpoint_.config.model.cell).has_cell_state();
  if (batch.decoder) {
    std::vector<int64_t> kept;
    for (size_t r = 0; r < batch.rows.size(); ++r)
      if (Batch::running(batch.rows[r])) {
        kept.push_back(static_cast<int64_t>(r));
        rows.push_back(std::move(batch.rows[r]));
      }
    if (!kept.empty()) {
      const State old = batch.decoder->state();
      const torch::Tensor index = torch::tensor(kept, torch::kLong);
      h.push_back(old.h.index_select(1, index));
      if (has_c) c.push_back(old.c.index_select(1, index));
    }
  }
  const auto zeros = [&](int64_t streams) {
    return torch::zeros({checkpoint_.config.model.num_layers, streams, checkpoint_.config.model.hidden_size});
  };
  for (auto& a : joining)
    if (Batch::running(a)) {
      h.push_back(a->primed.defined() ? a->primed.h : zeros(1));
      if (has_c) c.push_back(a->primed.defined() ? a->primed.c : zeros(1));
      a->primed = State();
      rows.push_back(std::move(a));
    }
  joining.clear();
  const int64_t live = static_cast<int64_t>(rows.size());
  batch.decoder.reset();
  batch.rows.clear();
  if (live == 0) return;
  const int64_t size = Batch::capacity_for(live);
  h.push_back(zeros(size - live));  // the free rows
  if (has_c) c.push_back(zeros(size - live));
  rows.resize(static_cast<size_t>(size));
  batch.rows = std::move(rows);
  batch.decoder = std::make_unique<StepDecoder>(weights_, size, options_.threads);
  batch.decoder->set_state({torch::cat(h, 1), has_c ? torch::cat(c, 1) : torch::Tensor()});
  batch.scratch.assign(static_cast<size_t>(batch.decoder->parts()), RowSampler());
  batch.ids.assign(static_cast<size_t>(size), 0);
  batch.next.assign(static_cast<size_t>(size), 0);
  batch.uniforms.assign(static_cast<size_t>(size), 0.0f);
  ++rebuilds_;
}

namespace {

// One decoder step of `batch`, drawing for the rows whose `draws` is set
// (their uniforms drawn beforehand, in row order, as generate() draws) and
// scoring, for the rows that report logprobs, the drawn character or the
// prompt's next one.
template <class Batch>
void step_and_draw(Batch& batch) {
  StepDecoder& decoder = *batch.decoder;
  decoder.for_each_part([&](int64_t part, int64_t first, int64_t rows) {
    decoder.step_part(part, batch.ids.data());
    const torch::Tensor& logits = decoder.logits();  // (B, V)
    const int64_t vocab = logits.size(1);
    for (int64_t r = first; r < first + rows; ++r) {
      const size_t row = static_cast<size_t>(r);
      if (row >= batch.rows.size() || !Batch::running(batch.rows[row])) continue;
      auto& a = *batch.rows[row];
      if (a.draws)
        sample_rows_into(logits.narrow(0, r, 1), a.request.sampling, batch.uniforms.data() + r,
                         batch.scratch[static_cast<size_t>(part)], batch.next.data() + r);
      if (a.reports() && (a.draws || a.scores_prompt))
        score_logits(logits.data_ptr<float>() + r * vocab, vocab,
                     a.draws ? batch.next[row] : a.prompt_ids[a.read], a.request.logprobs, a.scored);
    }
  });
}

}  // namespace

void ServeEngine::step() {
  Batch& b = *generating_;
  for (size_t r = 0; r < b.rows.size(); ++r) {
    if (!Batch::running(b.rows[r])) {
      b.ids[r] = 0;  // a free row
      continue;
    }
    Active& a = *b.rows[r];
    b.ids[r] = a.last_id;
    a.draws = true;
    // one uniform per step, as generate() draws it for its one sample
    if (!is_greedy(a.request.sampling)) b.uniforms[r] = a.rng.next_uniform();
  }
  step_and_draw(b);
  for (size_t r = 0; r < b.rows.size(); ++r)
    if (Batch::running(b.rows[r])) emit(*b.rows[r], b.next[r]);
  ++steps_;
}

bool ServeEngine::admit() {
  std::vector<std::unique_ptr<Active>> joining;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (exiting_ || std::chrono::steady_clock::now() >= deadline_) return false;
    while (!queue_.empty() && active() < options_.slots) {
      joining.push_back(std::move(queue_.front()));
      queue_.pop_front();
      ++active_count_;  // it holds a slot from now until it ends
    }
  }
  for (auto& a : joining) {
    if (a->stream->cancelled()) {
      end(*a, "cancelled");
      continue;
    }
    start_echo(*a);
    // max_tokens 0: nothing to generate, nothing drawn; the prompt is read
    // only to score it (echo with logprobs)
    if (a->remaining <= 0 && !(a->request.echo && a->reports() && a->prompt_ids.size() > 1)) end(*a, "length");
  }
  join(*prefilling_, joining);
  return true;
}

void ServeEngine::prefill(std::chrono::steady_clock::duration budget) {
  Batch& b = *prefilling_;
  const auto start = std::chrono::steady_clock::now();
  while (sweep(b) > 0) {
    bool any_read = false;  // some prompt was read to its end
    for (size_t r = 0; r < b.rows.size(); ++r) {
      if (!Batch::running(b.rows[r])) {
        b.ids[r] = 0;  // a free row
        continue;
      }
      Active& a = *b.rows[r];
      b.ids[r] = a.prompt_ids[a.read++];
      const bool read = a.read == a.prompt_ids.size();
      a.draws = read && a.remaining > 0;
      a.scores_prompt = !read && a.request.echo && a.reports();
      // the first character is drawn as generate() draws it after its prime
      if (a.draws && !is_greedy(a.request.sampling)) b.uniforms[r] = a.rng.next_uniform();
      any_read = any_read || read;
    }
    step_and_draw(b);
    ++prefill_steps_;
    for (auto& row : b.rows)
      if (Batch::running(row) && row->scores_prompt) {  // echo: the prompt's next character, scored
        std::string text;
        checkpoint_.vocab.append_decoded(text, row->prompt_ids[row->read]);
        row->stream->append(text, 0, &row->scored, 1);
      }
    if (any_read) {
      // read prompts move to the generating batch, with their first character
      std::vector<std::unique_ptr<Active>> primed;
      for (size_t r = 0; r < b.rows.size(); ++r) {
        if (!Batch::running(b.rows[r]) || b.rows[r]->read < b.rows[r]->prompt_ids.size()) continue;
        Active& a = *b.rows[r];
        if (!a.draws) {  // max_tokens 0: the prompt was read only to be scored
          end(a, "length");
          continue;
        }
        a.primed = b.decoder->row_state(static_cast<int64_t>(r));
        a.draws = false;
        emit(a, b.next[r]);
        primed.push_back(std::move(b.rows[r]));
      }
      join(*generating_, primed);
      if (b.worth_shrinking()) rebuild(b, primed);
    }
    // while streams generate, prompts are read for about two of their
    // steps (`budget`), so they see at most three times their usual gap
    // between characters while prompts wait (a first character matters more
    // to a reader than a few milliseconds more between the others, and the
    // server sends text in 10 ms events anyway); new prompts join at every
    // step
    if (generating_->live() > 0 && std::chrono::steady_clock::now() - start >= budget) return;
    if (!admit()) return;
  }
}

void ServeEngine::loop() {
  torch::NoGradGuard no_grad;  // grad mode is per thread
  using std::chrono::steady_clock;
  steady_clock::duration last_step = std::chrono::milliseconds(1);
  std::vector<std::unique_ptr<Active>> none;
  while (true) {
    int64_t live = sweep(*generating_) + sweep(*prefilling_);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return exiting_ || !queue_.empty() || live > 0; });
      if (exiting_ || steady_clock::now() >= deadline_) {
        // stopping: what is left ends now, each with its last text
        for (auto& a : queue_) a->stream->finish("length");
        queue_.clear();
        end_all(*generating_);
        end_all(*prefilling_);
        if (exiting_) return;
        continue;
      }
    }
    if (!admit()) continue;
    prefill(std::max<steady_clock::duration>(2 * last_step, std::chrono::microseconds(500)));
    if (generating_->worth_shrinking()) rebuild(*generating_, none);
    if (prefilling_->worth_shrinking()) rebuild(*prefilling_, none);
    if (generating_->live() > 0) {
      const auto start = steady_clock::now();
      step();
      last_step = steady_clock::now() - start;
    }
  }
}

}  // namespace charrnn
