// Continuous batching for the server: every stream in flight advances one
// character per decoder step, all of them as one batch. A stream joins at
// the next step, leaves when it has its characters, hits a stop string or is
// cancelled (a client that went away), and waits in a queue while every
// slot is taken.
//
// A joining stream first reads its prompt, one character per step, in a
// second batch of its own (the prefill batch), so that many prompts that
// arrive together are read together instead of one after another, and the
// streams already generating are not held up by a long one: while both
// batches have work, the prefill batch steps for about as long as two steps
// of the other. When a stream's prompt is read, its first character is
// drawn from the prefill batch's logits and its state moves to the
// generating batch.
//
// A stream joins a batch in a free row (one whose stream ended or moved
// on): a new decoder, with rows to spare, is built only when none is free
// or half of them are. Streams that arrive one by one, as HTTP clients do,
// then cost no rebuild each: a rebuild costs about as much as a step.
//
// With logprobs, a character's numbers come from the very logits it was
// drawn from (an echoed prompt's from the logits after the character before
// it, read in the prefill batch), worked out by the thread that stepped the
// row; they are held back with the text by the stop filter, so that the
// text a client reads and its numbers always match, one per character.
//
// Same request and seed, same text, whatever else is being served: each
// stream has its own random stream, drawn exactly as `charrnn generate`
// draws for one sample, and both batches always run the CPU's packed row
// kernel (step_decoder.h), whose sums for a row do not depend on the other
// rows, even when a stream is alone (a padding row keeps it off the
// one-stream path). `charrnn generate` reads the prompt with the model's
// forward() and steps one stream through BLAS gemv, which round differently
// in the last bits: the texts are the same unless a draw falls within that
// rounding of a boundary, which tests have not seen happen.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/sampler.h"
#include "charrnn/serve_api.h"

namespace charrnn {

/// One choice being generated: the engine writes its text, the HTTP side
/// reads it. Thread-safe.
class ServeStream {
 public:
  /// Waits up to `timeout` for text; appends it to `out`, and its
  /// characters' log-probabilities (one each, when the request asked for
  /// them) to `logprobs`. Returns false once the stream has ended and
  /// everything was read.
  bool read(std::string& out, std::chrono::milliseconds timeout, std::vector<TokenLogprob>* logprobs = nullptr);
  /// Waits up to `timeout` for the stream to end; true once it has.
  bool wait_ended(std::chrono::milliseconds timeout);
  /// The client went away: the engine drops the stream at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  /// "stop" or "length" once ended; "" before.
  std::string finish_reason() const;
  /// Characters generated so far (stop text included, as it was generated).
  int64_t generated() const { return generated_.load(); }
  /// When the first character was generated; time_point{} before.
  std::chrono::steady_clock::time_point first_char_at() const;

 private:
  friend class ServeEngine;
  /// `text` and, when the stream reports them, the log-probabilities of its
  /// characters, one each; `chars` of them were generated (0 for an echo).
  void append(const std::string& text, int64_t chars, const TokenLogprob* logprobs = nullptr, size_t count = 0);
  void finish(const std::string& reason);

  mutable std::mutex mutex_;
  std::vector<TokenLogprob> pending_logprobs_;
  std::condition_variable ready_;  // text, or the end
  std::condition_variable end_;    // the end only: a reader of the whole text is not woken per character
  std::string pending_;
  bool ended_ = false;
  std::string reason_;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> generated_{0};
  std::chrono::steady_clock::time_point first_char_at_{};
};

struct DecoderWeights;

struct ServeEngineOptions {
  int64_t slots = 64;   ///< streams stepped together at most
  int64_t queue = 256;  ///< streams waiting for a slot at most
  int64_t threads = 0;  ///< the decoder's threads; 0: current_threads()
};

class ServeEngine {
 public:
  /// Serves `checkpoint`'s model on the CPU; starts the stepping thread.
  ServeEngine(const Checkpoint& checkpoint, ServeEngineOptions options);
  ~ServeEngine();
  ServeEngine(const ServeEngine&) = delete;
  ServeEngine& operator=(const ServeEngine&) = delete;

  /// Queues the streams of one request, all or none: empty when the queue
  /// cannot take them all or the engine is stopping.
  std::vector<std::shared_ptr<ServeStream>> submit(std::vector<StreamRequest> requests);
  /// Stops taking streams: submit() returns none from now on; those in
  /// flight and queued run on.
  void stop_taking();
  /// Stops taking streams; those in flight and queued run on until
  /// `deadline` (the earliest one given, when called again), then end with
  /// finish_reason "length". Returns when all ended.
  void drain(std::chrono::steady_clock::time_point deadline);

  int64_t active() const { return active_count_.load(); }
  int64_t queued() const;
  const Checkpoint& checkpoint() const { return checkpoint_; }
  const ServeEngineOptions& options() const { return options_; }
  /// Decoder steps taken by the generating batch and by the prefill batch,
  /// and how often a batch was rebuilt (a stream joined, or enough left):
  /// for the load benchmark and tests.
  int64_t steps() const { return steps_.load(); }
  int64_t prefill_steps() const { return prefill_steps_.load(); }
  int64_t rebuilds() const { return rebuilds_.load(); }

 private:
  struct Active;
  struct Batch;
  void loop();
  /// Ends what is cancelled, and counts the streams still running.
  int64_t sweep(Batch& batch);
  /// Puts `joining` into free rows of `batch`, or rebuilds it when too few
  /// are free.
  void join(Batch& batch, std::vector<std::unique_ptr<Active>>& joining);
  /// Moves the running rows, then `joining`, into a new decoder with room
  /// to spare.
  void rebuild(Batch& batch, std::vector<std::unique_ptr<Active>>& joining);
  /// Moves streams from the queue into the prefill batch while slots are
  /// free. False when the engine is exiting or past its drain deadline.
  bool admit();
  /// Reads prompts, moving each read one to the generating batch, until
  /// none is left or, while streams generate, `budget` has passed.
  void prefill(std::chrono::steady_clock::duration budget);
  void step();
  void emit(Active& a, int64_t id);
  /// Hands `text`, released by the stop filter, to the stream with the
  /// scores of its characters; `generated` of them were generated now.
  void release(Active& a, const std::string& text, int64_t generated);
  /// echo: the prompt's text, or with logprobs its first character (the
  /// prefill batch adds the others as it scores them).
  void start_echo(Active& a);
  /// Ends a stream that holds a slot.
  void end(Active& a, const std::string& reason);
  void end_all(Batch& batch);

  Checkpoint checkpoint_;
  ServeEngineOptions options_;
  CharRNN model_{nullptr};
  std::shared_ptr<const DecoderWeights> weights_;  // packed once, shared by every rebuilt decoder
  std::unique_ptr<Batch> generating_, prefilling_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Active>> queue_;
  bool stopping_ = false;   // no new streams
  bool exiting_ = false;    // the thread ends
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::atomic<int64_t> active_count_{0};  // streams holding a slot: taken from the queue, not ended
  std::atomic<int64_t> steps_{0}, prefill_steps_{0}, rebuilds_{0};
  std::thread thread_;
};

}  // namespace charrnn
