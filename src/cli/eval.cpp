// charrnn eval: a model's loss on a text, carried and chunked.
#include "cli.h"

#include <algorithm>
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "charrnn/corpus.h"
#include "charrnn/evaluate.h"
#include "charrnn/export.h"
#include "charrnn/file_io.h"
#include "charrnn/runtime.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

namespace {

// The --per-char file: one line per predicted character, streamed as the
// text is read, so memory does not grow with the text.
charrnn::EvalResult write_per_char(const std::string& path, charrnn::CharRNN& model, const charrnn::Vocab& vocab,
                                   const std::u32string& text, const torch::Tensor& ids, int64_t window,
                                   int64_t top_k, const torch::Device& device) {
  charrnn::ensure_parent_directory(path);
  charrnn::AtomicFileWriter writer(path);
  std::string buffer;
  // positions count the known characters only; offsets count every code point of the text
  size_t cursor = 0;
  int64_t next_known = 0;
  const auto offset_of = [&](int64_t position) {
    for (;; ++cursor)
      if (vocab.contains(text[cursor]) && next_known++ == position) return cursor++;
  };
  const auto char_of = [&](int64_t id) { return charrnn::encode_utf8(std::u32string(1, vocab.char_at(id))); };
  charrnn::ScoreOptions options;
  options.window = window;
  options.top_k = top_k;
  const charrnn::EvalResult result =
      charrnn::score_characters(model, ids, options, device, [&](const charrnn::CharScore& score) {
        nlohmann::ordered_json top = nlohmann::ordered_json::array();
        for (size_t i = 0; i < score.top_ids.size(); ++i)
          top.push_back(nlohmann::ordered_json::array({char_of(score.top_ids[i]), score.top_logprobs[i]}));
        const nlohmann::ordered_json line{{"offset", offset_of(score.position)},
                                          {"char", char_of(score.id)},
                                          {"logprob", score.logprob},
                                          {"top", std::move(top)}};
        buffer += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        buffer += '\n';
        if (buffer.size() >= (1u << 16)) {
          writer.write(buffer.data(), buffer.size());
          buffer.clear();
        }
      });
  writer.write(buffer.data(), buffer.size());
  writer.commit();
  return result;
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
      ("top-k", "with --per-char: the most likely next characters listed per position, 0..V",
       cxxopts::value<int64_t>()->default_value("5"))
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
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
  const bool per_char = args.count("per-char") > 0;
  int64_t top_k = args["top-k"].as<int64_t>();
  if (args.count("top-k") && !per_char) throw UsageError("--top-k needs --per-char");
  if (top_k < 0) throw UsageError("--top-k must be >= 0, got " + std::to_string(top_k));
  if (per_char && args.count("streams") && args["streams"].as<int64_t>() != 1)
    throw UsageError("--per-char reads the text as one stream; --streams must be 1 or left out");
  charrnn::configure_threads(0);
  const torch::Device device = charrnn::resolve_device(args["device"].as<std::string>());
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::u32string text =
      charrnn::read_documents(charrnn::list_corpus_files(data_paths, args["glob"].as<std::string>()),
                              charrnn::decode_utf8(checkpoint.config.data.separator, "data.separator"));
  const charrnn::Vocab::Encoded encoded = checkpoint.vocab.encode_skipping_unknown(text);
  if (encoded.ids.size() < 2)
    throw UsageError(data + ": needs at least 2 characters the model knows; it has " +
                     std::to_string(encoded.ids.size()) + " (" + std::to_string(encoded.unknown) + " unknown)");
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);
  const int64_t streams = per_char ? 1 : positive("streams", checkpoint.config.train.batch_size);
  const int64_t window = positive("window", checkpoint.config.train.seq_length);
  // the default never exceeds a small vocabulary; an explicit K must fit it
  if (!args.count("top-k")) top_k = std::min(top_k, checkpoint.vocab.size());
  if (per_char && top_k > checkpoint.vocab.size())
    throw UsageError("--top-k must be in 0.." + std::to_string(checkpoint.vocab.size()) +
                     " (the model's vocabulary), got " + std::to_string(top_k));
  const torch::Tensor ids = charrnn::to_tensor(encoded.ids);
  charrnn::EvalResult result = per_char ? write_per_char(args["per-char"].as<std::string>(), model, checkpoint.vocab, text,
                                                         ids, window, top_k, device)
                                        : charrnn::evaluate(model, ids, streams, window, device);
  result.unknown_chars = encoded.unknown;
  // as many windows per pass as the carried protocol reads streams
  const charrnn::EvalResult chunked = charrnn::evaluate_chunked(model, ids, window, std::max<int64_t>(streams, 32), device);
  if (args.count("json")) {
    std::cout << nlohmann::json{{"loss", result.loss},
                                {"bpc", result.bpc},
                                {"perplexity", result.perplexity},
                                {"chars", result.chars},
                                {"unknown_chars", result.unknown_chars},
                                {"streams", result.streams},
                                {"window", window},
                                {"loss_chunked", chunked.loss},
                                {"bpc_chunked", chunked.bpc},
                                {"checkpoint", path},
                                {"data", data}}
                     .dump()
              << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4) << "loss        " << result.loss << " nats/char, the state carried through "
              << result.streams << " stream(s) of about " << result.chars / result.streams << " characters\n"
              << "bpc         " << result.bpc << " bits/char\n"
              << "chunked     " << chunked.loss << " nats/char, " << chunked.bpc << " bpc, " << window
              << "-character chunks each from a zero state\n"
              << "perplexity  " << result.perplexity << "\n"
              << "chars       " << result.chars << "\n"
              << "unknown     " << result.unknown_chars << "\n";
  }
  return 0;
}

}  // namespace charrnn::cli
