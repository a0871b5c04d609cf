// charrnn eval: a model's loss on a text, carried and chunked; with --per-char
// or --html, what each character cost, streamed to a file; with --dynamic,
// the loss of a copy that adapts to the text as it reads it.
#include "cli.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "charrnn/corpus.h"
#include "charrnn/dynamic_eval.h"
#include "charrnn/encoded_corpus.h"
#include "charrnn/evaluate.h"
#include "charrnn/export.h"
#include "charrnn/file_io.h"
#include "charrnn/runtime.h"
#include "charrnn/surprisal_page.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

namespace {

// The --per-char file: one line per predicted character.
class PerCharWriter {
 public:
  PerCharWriter(const std::string& path, const charrnn::Vocab& vocab, int64_t top_k)
      : writer_((charrnn::ensure_parent_directory(path), path)), vocab_(vocab), top_k_(top_k) {}

  void add(const charrnn::TextChar& c) {
    if (!c.score) return;
    const charrnn::CharScore& score = *c.score;
    nlohmann::ordered_json top = nlohmann::ordered_json::array();
    for (size_t i = 0; i < static_cast<size_t>(top_k_); ++i)
      top.push_back(nlohmann::ordered_json::array({char_of(score.top_ids[i]), score.top_logprobs[i]}));
    const nlohmann::ordered_json line{{"offset", c.offset},
                                      {"char", char_of(score.id)},
                                      {"logprob", score.logprob},
                                      {"top", std::move(top)}};
    buffer_ += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    buffer_ += '\n';
    if (buffer_.size() >= (1u << 16)) {
      writer_.write(buffer_.data(), buffer_.size());
      buffer_.clear();
    }
  }

  void finish() {
    writer_.write(buffer_.data(), buffer_.size());
    writer_.commit();
  }

 private:
  std::string char_of(int64_t id) const { return charrnn::encode_utf8(std::u32string(1, vocab_.char_at(id))); }
  charrnn::AtomicFileWriter writer_;
  const charrnn::Vocab& vocab_;
  int64_t top_k_;
  std::string buffer_;
};

// --per-char and --html: the text read, scored and written a piece at a time
// (as one stream, with the chunked protocol beside it), so that memory does
// not grow with the text.
struct StreamedEval {
  charrnn::EvalResult carried, chunked;
};
StreamedEval eval_streaming(const std::vector<std::string>& files, std::u32string_view separator,
                            const std::string& data, charrnn::CharRNN& model, const charrnn::Vocab& vocab,
                            const charrnn::ScoreOptions& options, int64_t chunked_batch, const torch::Device& device,
                            PerCharWriter* per_char, charrnn::SurprisalPageWriter* page) {
  charrnn::ChunkedEvaluator chunked(model, options.window, chunked_batch, device);
  charrnn::TextScorer scorer(
      model, vocab, options, device,
      [&](const charrnn::TextChar& c) {
        if (per_char) per_char->add(c);
        if (page) page->add(c);
      },
      &chunked);
  charrnn::read_documents_in_pieces(files, separator, size_t{1} << 16,
                                    [&](std::u32string_view piece) { scorer.feed(piece); });
  if (scorer.known() < 2)
    throw UsageError(data + ": needs at least 2 characters the model knows; it has " +
                     std::to_string(scorer.known()) + " (" + std::to_string(scorer.unknown()) + " unknown)");
  StreamedEval result{scorer.finish(), chunked.finish()};
  if (per_char) per_char->finish();
  if (page) page->finish(result.carried);
  return result;
}

std::string dynamic_line(const charrnn::EvalResult& adapted, const charrnn::EvalResult& static_loss,
                         const charrnn::DynamicEvalOptions& settings, double seconds) {
  std::ostringstream line;
  line << std::fixed << std::setprecision(4) << "dynamic     " << adapted.loss << " nats/char, " << adapted.bpc
       << " bpc, " << static_loss.loss - adapted.loss << " below the loss above; adapting every " << settings.segment
       << " characters (lr " << std::defaultfloat << settings.learning_rate << ", decay " << settings.decay << ", "
       << std::fixed << std::setprecision(1) << seconds << " s)\n";
  return line.str();
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  cxxopts::Options options("charrnn eval", "Measure a checkpoint's loss on a text file.");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("data", "UTF-8 text file or folder to evaluate on; repeat it for several (files are joined by the "
               "model's data.separator, as in training)", cxxopts::value<std::vector<std::string>>())
      ("glob", "folders: only files whose name matches, e.g. '*.txt'", cxxopts::value<std::string>()->default_value(""))
      ("json", "print one JSON object")
      ("streams", "the text is read as this many contiguous pieces, the state carried through each; "
                  "1 reads it as one stream, as long generation does (slower); default: the model's train.batch_size",
       cxxopts::value<int64_t>())
      ("window", "characters per forward pass, and the chunk length of loss_chunked (each chunk from a zero "
                 "state); default: the model's train.seq_length", cxxopts::value<int64_t>())
      ("per-char", "also write one JSON line per predicted character to this file: offset, char, logprob and the "
                   "--top-k most likely characters; reads the text as one stream (--streams 1)",
       cxxopts::value<std::string>())
      ("html", "also write a self-contained page to this file: the text coloured by each character's surprisal, "
               "the --top-k most likely characters on hover, bpc, the most surprising spans and the mean per line; "
               "reads the text as one stream (--streams 1)",
       cxxopts::value<std::string>())
      ("top-k", "with --per-char or --html: the most likely next characters listed per position, 0..V",
       cxxopts::value<int64_t>()->default_value("5"))
      ("dynamic", "also read the text with dynamic evaluation: each segment is scored, then a copy of the "
                  "weights takes one step on it, pulled back toward the trained ones; prints that loss beside the "
                  "static one, both read as one stream (--streams 1) in --dynamic-segment windows")
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
  add_dynamic_options(options);
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::vector<std::string> data_paths = repeated_flag(args, "data");
  if (data_paths.empty()) throw UsageError("--data is required");
  const std::string data = charrnn::describe_paths(data_paths);
  const auto positive = [&](const char* name, int64_t fallback) {
    if (!args.count(name)) return fallback;
    const int64_t v = args[name].as<int64_t>();
    if (v < 1) throw UsageError(std::string("--") + name + " must be >= 1, got " + std::to_string(v));
    return v;
  };
  const bool per_char = args.count("per-char") > 0, html = args.count("html") > 0;
  const bool streamed = per_char || html;
  int64_t top_k = args["top-k"].as<int64_t>();
  if (args.count("top-k") && !streamed) throw UsageError("--top-k needs --per-char or --html");
  if (top_k < 0) throw UsageError("--top-k must be >= 0, got " + std::to_string(top_k));
  if (streamed && args.count("streams") && args["streams"].as<int64_t>() != 1)
    throw UsageError(std::string(per_char ? "--per-char" : "--html") +
                     " reads the text as one stream; --streams must be 1 or left out");
  const bool dynamic = args.count("dynamic") > 0;
  if (!dynamic && (args.count("dynamic-lr") || args.count("dynamic-decay") || args.count("dynamic-segment")))
    throw UsageError("--dynamic-lr, --dynamic-decay and --dynamic-segment need --dynamic");
  if (dynamic && streamed) throw UsageError("--dynamic cannot be combined with --per-char or --html");
  if (dynamic && args.count("streams") && args["streams"].as<int64_t>() != 1)
    throw UsageError("--dynamic reads the text as one stream; --streams must be 1 or left out");
  const charrnn::DynamicEvalOptions dynamic_settings = dynamic ? dynamic_options(args) : charrnn::DynamicEvalOptions{};
  charrnn::configure_threads(0);
  const torch::Device device = charrnn::resolve_device(args["device"].as<std::string>());
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::vector<std::string> files = charrnn::list_corpus_files(data_paths, args["glob"].as<std::string>());
  const std::u32string separator = charrnn::decode_utf8(checkpoint.config.data.separator, "data.separator");
  const charrnn::Vocab& vocab = checkpoint.vocab;
  const int64_t streams = streamed || dynamic ? 1 : positive("streams", checkpoint.config.train.batch_size);
  const int64_t window = positive("window", checkpoint.config.train.seq_length);
  // the default never exceeds a small vocabulary; an explicit K must fit it
  if (!args.count("top-k")) top_k = std::min(top_k, vocab.size());
  if (streamed && top_k > vocab.size())
    throw UsageError("--top-k must be in 0.." + std::to_string(vocab.size()) + " (the model's vocabulary), got " +
                     std::to_string(top_k));
  // as many windows per pass as the carried protocol reads streams
  const int64_t chunked_batch = std::max<int64_t>(streams, 32);
  charrnn::EvalResult result, chunked, adapted;
  double dynamic_seconds = 0;
  if (streamed) {
    std::optional<PerCharWriter> per_char_writer;
    std::optional<charrnn::SurprisalPageWriter> page;
    if (per_char) per_char_writer.emplace(args["per-char"].as<std::string>(), vocab, top_k);
    if (html) {
      charrnn::SurprisalPageOptions page_options;
      page_options.top_k = top_k;
      page_options.title = path + " on " + data;
      page.emplace(args["html"].as<std::string>(), vocab, page_options);
    }
    charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);
    charrnn::ScoreOptions options;
    options.window = window;
    options.top_k = top_k;
    const StreamedEval streamed_result =
        eval_streaming(files, separator, data, model, vocab, options, chunked_batch, device,
                       per_char_writer ? &*per_char_writer : nullptr, page ? &*page : nullptr);
    result = streamed_result.carried;
    chunked = streamed_result.chunked;
  } else {
    const std::u32string text = charrnn::read_documents(files, separator);
    const charrnn::Vocab::Encoded encoded = vocab.encode_skipping_unknown(text);
    if (encoded.ids.size() < 2)
      throw UsageError(data + ": needs at least 2 characters the model knows; it has " +
                       std::to_string(encoded.ids.size()) + " (" + std::to_string(encoded.unknown) + " unknown)");
    charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);
    const torch::Tensor ids = charrnn::to_tensor(encoded.ids);
    if (dynamic) {
      // the static loss comes from the same pass, in windows of one segment
      const auto start = std::chrono::steady_clock::now();
      const charrnn::DynamicEvalResult both = charrnn::evaluate_dynamic(model, ids, dynamic_settings, device);
      dynamic_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      result = both.static_loss;
      adapted = both.dynamic;
    } else {
      result = charrnn::evaluate(model, ids, streams, window, device);
    }
    result.unknown_chars = encoded.unknown;
    chunked = charrnn::evaluate_chunked(model, ids, window, chunked_batch, device);
  }
  if (args.count("json")) {
    nlohmann::json out{{"loss", result.loss},
                       {"bpc", result.bpc},
                       {"perplexity", result.perplexity},
                       {"chars", result.chars},
                       {"unknown_chars", result.unknown_chars},
                       {"streams", result.streams},
                       {"window", window},
                       {"loss_chunked", chunked.loss},
                       {"bpc_chunked", chunked.bpc},
                       {"checkpoint", path},
                       {"data", data}};
    if (dynamic) {
      out["loss_dynamic"] = adapted.loss;
      out["bpc_dynamic"] = adapted.bpc;
      out["dynamic_gain"] = result.loss - adapted.loss;
      out["dynamic_lr"] = dynamic_settings.learning_rate;
      out["dynamic_decay"] = dynamic_settings.decay;
      out["dynamic_segment"] = dynamic_settings.segment;
      out["seconds_dynamic"] = dynamic_seconds;
    }
    std::cout << out.dump() << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4) << "loss        " << result.loss << " nats/char, the state carried through "
              << result.streams << " stream(s) of about " << result.chars / result.streams << " characters\n"
              << "bpc         " << result.bpc << " bits/char\n"
              << (dynamic ? dynamic_line(adapted, result, dynamic_settings, dynamic_seconds) : std::string())
              << "chunked     " << chunked.loss << " nats/char, " << chunked.bpc << " bpc, " << window
              << "-character chunks each from a zero state\n"
              << "perplexity  " << result.perplexity << "\n"
              << "chars       " << result.chars << "\n"
              << "unknown     " << result.unknown_chars << "\n";
  }
  return 0;
}

}  // namespace charrnn::cli
