// charrnn serve: an OpenAI-compatible HTTP server over the continuous-
// batching engine (serve_engine.h), with SSE streaming, a playground page,
// an optional API key and Prometheus metrics. The protocol lives in the
// library (serve_api.h), and so do the served model and its reload
// (serve_reload.h); this file is the cpp-httplib wiring.
#include "cli.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "charrnn/export.h"
#include "charrnn/runtime.h"
#include "charrnn/serve_api.h"
#include "charrnn/serve_engine.h"
#include "charrnn/serve_reload.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string random_id() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string("cmpl-") + buffer;
}

constexpr const char* kBodyTooLarge = "the request body is larger than this server takes (--max-body)";

std::vector<std::string> header_values(const httplib::Request& req, const char* name) {
  std::vector<std::string> values;
  const auto range = req.headers.equal_range(name);  // case-insensitive, as HTTP wants
  for (auto it = range.first; it != range.second; ++it) values.push_back(it->second);
  return values;
}

std::string framing_problem(const httplib::Request& req) {
  return request_framing_problem(header_values(req, "Content-Length"), header_values(req, "Transfer-Encoding"),
                                 req.method == "POST" && req.path == "/v1/completions");
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e).dump(), "application/json");
}

// An error after which the connection must close, because the rest of the
// request was not read (and must not be taken for a next request).
// cpp-httplib 0.11 keeps a connection open unless the client asked for
// "close", whatever the response says; a body written by a provider that
// then reports failure makes it close the socket once the response is out.
void send_error_and_close(httplib::Response& res, const ApiError& e) {
  auto body = std::make_shared<const std::string>(error_body(e).dump());
  res.status = e.status;
  res.set_header("Connection", "close");
  res.set_content_provider(body->size(), "application/json",
                           [body](size_t offset, size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;  // all written: failing now closes the connection
                           });
}

// What one completion request streams or returns, choice by choice.
struct Completion {
  std::shared_ptr<ServeEngine> engine;  // kept alive until the last chunk is read
  CompletionRequest request;
  std::vector<std::shared_ptr<ServeStream>> streams;  // index = prompt * n + j
  std::string id, model;
  int64_t created = 0;
  Clock::time_point start;
  int64_t prompt_chars = 0;

  int64_t generated() const {
    int64_t total = 0;
    for (const auto& s : streams) total += s->generated();
    return total;
  }
  // the first character of any choice, for the time-to-first-character histogram
  double first_char_seconds() const {
    Clock::time_point first = Clock::time_point::max();
    for (const auto& s : streams)
      if (s->first_char_at() != Clock::time_point{}) first = std::min(first, s->first_char_at());
    return first == Clock::time_point::max() ? -1 : std::chrono::duration<double>(first - start).count();
  }
};

class Server {
 public:
  Server(const cxxopts::ParseResult& args)
      : checkpoint_path_(require(args, "checkpoint")),
        engine_options_{int_flag(args, "slots", 64), int_flag(args, "queue", 256), 0},
        served_(checkpoint_path_, engine_options_),
        watch_(args.count("watch") > 0) {
    host_ = args["host"].as<std::string>();
    port_ = static_cast<int>(int_flag(args, "port", 8080));
    if (port_ < 0 || port_ > 65535) throw UsageError("--port must be in [0, 65535], got " + std::to_string(port_));
    limits_.max_tokens = int_flag(args, "max-length", 10000);
    limits_.strict_prompts = args.count("strict-prompts") > 0;
    const int64_t interval = int_flag(args, "stream-interval", 10);
    if (interval < 0 || interval > 1000) throw UsageError("--stream-interval must be in [0, 1000] ms");
    stream_interval_ = std::chrono::milliseconds(interval);
    if (limits_.max_tokens < 1) throw UsageError("--max-length must be >= 1");
    const char* env_key = std::getenv("CHARRNN_API_KEY");
    api_key_ = args.count("api-key") ? args["api-key"].as<std::string>() : env_key ? env_key : "";
    cors_origin_ = args.count("cors-origin") ? args["cors-origin"].as<std::string>() : "";
    const int64_t max_body = int_flag(args, "max-body", 1 << 20);
    if (max_body < 1024) throw UsageError("--max-body must be >= 1024 bytes");
    max_body_ = static_cast<size_t>(max_body);
    model_id_ = std::filesystem::path(checkpoint_path_).stem().string();
    if (!is_valid_utf8(model_id_)) model_id_ = "charrnn";

    // every streaming client holds a worker while it reads; the pool caps
    // the connections served at once, the rest wait to be accepted
    const size_t workers = static_cast<size_t>(engine_options_.slots + engine_options_.queue + 16);
    http_.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    http_.set_payload_max_length(max_body_);
    // a client that sends its request a byte a minute is cut off, and so is
    // one that stops reading its stream
    const int64_t timeout = int_flag(args, "timeout", 10);
    if (timeout < 1 || timeout > 3600) throw UsageError("--timeout must be in [1, 3600] seconds");
    http_.set_read_timeout(std::chrono::seconds(timeout));
    http_.set_write_timeout(std::chrono::seconds(timeout));
    http_.set_keep_alive_timeout(2);
    // small writes (a response's head, then its body; an event of a
    // stream) go out at once: with Nagle's algorithm each waited for the
    // client's delayed ACK, 40 ms a response
    http_.set_tcp_nodelay(true);
    routes();
  }

  int run() {
    const int bound = port_ == 0 ? http_.bind_to_any_port(host_) : (http_.bind_to_port(host_, port_) ? port_ : -1);
    if (bound < 0) throw Error("cannot listen on " + host_ + ":" + std::to_string(port_) + " (in use, or not an address here)");
    const Checkpoint& first = engine()->checkpoint();
    std::cerr << "serving " << checkpoint_path_ << " (" << to_string(first.config.model.cell) << " "
              << first.config.model.num_layers << "x" << first.config.model.hidden_size << ", "
              << engine_options_.slots << " slots) on http://" << host_ << ":" << bound << "/"
              << (api_key_.empty() ? "" : " (API key required)") << (watch_ ? " (reloading when it changes)" : "")
              << std::endl;
    install_stop_handlers();
    std::atomic<bool> listener_ended{false};
    std::thread listener([&] {
      http_.listen_after_bind();
      listener_ended = true;
    });
    for (int tick = 0; !g_stop_requested.load() && !listener_ended.load(); ++tick) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (watch_ && tick % 10 == 9) reload_if_replaced();
    }
    // SIGINT/SIGTERM: refuse new streams, let those in flight end (each
    // with its final chunk) for a few seconds, then close
    const std::shared_ptr<ServeEngine> last = engine();
    std::cerr << "stopping: finishing " << last->active() + last->queued() << " stream(s)" << std::endl;
    served_.drain(Clock::now() + std::chrono::seconds(3));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the last chunks reach their clients
    http_.stop();
    listener.join();
    std::cerr << "stopped" << std::endl;
    return 0;
  }

 private:
  std::shared_ptr<ServeEngine> engine() const { return served_.engine(); }

  // --watch: training renames a new checkpoint into place (serve_reload.h)
  void reload_if_replaced() {
    const ReloadResult reload = served_.reload_if_replaced();
    if (reload.outcome == ReloadResult::Outcome::kReloaded)
      std::cerr << "reloaded " << checkpoint_path_ << " (step " << reload.step << ")" << std::endl;
    else if (reload.outcome == ReloadResult::Outcome::kFailed)
      std::cerr << "ignored the new " << checkpoint_path_ << ": " << first_line(reload.error) << std::endl;
  }

  void routes() {
    if (!cors_origin_.empty())
      http_.set_default_headers({{"Access-Control-Allow-Origin", cors_origin_},
                                 {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                                 {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                                 {"Access-Control-Expose-Headers", kSubstitutionsHeader}});
    http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.method == "OPTIONS") {  // a browser's preflight carries no key
        res.status = cors_origin_.empty() ? 405 : 204;
        return httplib::Server::HandlerResponse::Handled;
      }
      // before any body is read: a framing that two readers of the request
      // could take differently is refused, and the connection closed
      if (const std::string framing = framing_problem(req); !framing.empty()) {
        send_error_and_close(res, ApiError(400, framing));
        return httplib::Server::HandlerResponse::Handled;
      }
      // the playground page (and its module) is served without the key, as a browser cannot
      // send one when it opens a page: the page holds nothing of the model,
      // and asks for the key before it calls the API
      const bool open_route =
          req.path == "/health" || (req.method == "GET" && (req.path == "/" || req.path == "/probabilities.js"));
      if (!api_key_.empty() && !open_route && req.get_header_value("Authorization") != "Bearer " + api_key_) {
        send_error(res, ApiError(401, "missing or wrong API key: send the header \"Authorization: Bearer KEY\"",
                                 "invalid_request_error", "", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty() || res.status == 204 || res.has_header("Connection"))
        return;  // a handler's own error body (send_error, send_error_and_close)
      const std::string message = res.status == 404   ? "no route " + req.path
                                  : res.status == 413 ? kBodyTooLarge
                                  : res.status == 405 ? req.method + " is not allowed on " + req.path
                                                      : "the request could not be read";
      send_error(res, ApiError(res.status, message));
    });
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        what = ex.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, first_line(what), "server_error"));
    });
    http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const bool known = req.path == "/" || req.path == "/probabilities.js" || req.path == "/health" ||
                         req.path == "/metrics" || req.path == "/v1/models" || req.path == "/v1/completions";
      metrics_.count_request(known ? req.path : "other", res.status);
    });

    http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      const std::shared_ptr<ServeEngine> e = engine();
      res.set_content(metrics_.render(e->active(), e->queued(), engine_options_.slots),
                      "text/plain; version=0.0.4");
    });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(json{{"object", "list"}, {"data", json::array({model_card()})}}.dump(), "application/json");
    });
    http_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kPlaygroundPage, "text/html; charset=utf-8");
    });
    http_.Get("/probabilities.js", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kProbabilityViewSource, "text/javascript; charset=utf-8");
    });
    // the body is read here, up to --max-body, rather than by cpp-httplib,
    // which (0.11) takes a chunked body of any size into memory
    http_.Post("/v1/completions",
               [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
                 std::string body;
                 bool too_large = false;
                 const bool complete_body = read([&](const char* data, size_t size) {
                   too_large = body.size() + size > max_body_;
                   if (!too_large) body.append(data, size);
                   return !too_large;
                 });
                 // cpp-httplib says 413 itself for a Content-Length past --max-body
                 if (too_large || res.status == 413)  // the rest of it is not read
                   return send_error_and_close(res, ApiError(413, kBodyTooLarge));
                 if (!complete_body) return send_error_and_close(res, ApiError(400, "the request body could not be read"));
                 complete(body, res);
               });
    // the known routes with another method: 405 rather than 404
    const auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request&, httplib::Response& res) {
        res.status = 405;
        res.set_header("Allow", allow);
      };
    };
    for (const char* path : {"/health", "/metrics", "/v1/models", "/", "/probabilities.js"}) {
      http_.Post(path, not_allowed("GET"));
      http_.Put(path, not_allowed("GET"));
      http_.Delete(path, not_allowed("GET"));
      http_.Patch(path, not_allowed("GET"));
    }
    http_.Get("/v1/completions", not_allowed("POST"));
    http_.Put("/v1/completions", not_allowed("POST"));
    http_.Delete("/v1/completions", not_allowed("POST"));
    http_.Patch("/v1/completions", not_allowed("POST"));
  }

  json model_card() const {
    const std::shared_ptr<ServeEngine> e = engine();
    const Checkpoint& c = e->checkpoint();
    const auto& p = c.progress;
    return {{"id", model_id_},
            {"object", "model"},
            {"created", 0},
            {"owned_by", "charrnn"},
            {"cell", to_string(c.config.model.cell)},
            {"num_layers", c.config.model.num_layers},
            {"hidden_size", c.config.model.hidden_size},
            {"embedding_dim", c.config.model.embedding_dim},
            {"vocab_size", c.vocab.size()},
            {"trained_steps", p.step},
            {"best_val_bpc", p.best_step >= 0 ? json(p.best_val_loss / std::log(2.0)) : json(nullptr)},
            {"sample_prime", c.config.sample.prime}};
  }

  void complete(const std::string& body, httplib::Response& res) {
    auto c = std::make_shared<Completion>();
    c->start = Clock::now();
    // one engine for the whole request: a reload meanwhile does not change its model
    std::shared_ptr<ServeEngine> engine = this->engine();
    try {
      c->request = parse_completion_request(body, engine->checkpoint().vocab, limits_, engine->checkpoint().config.sample);
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    const CompletionRequest& r = c->request;
    const uint64_t seed = r.seed ? *r.seed : std::random_device{}();
    for (const std::u32string& prompt : r.prompts) c->prompt_chars += static_cast<int64_t>(prompt.size());
    const std::vector<StreamRequest> wanted = choice_streams(r, seed);
    SubmittedRequest submitted = served_.submit(engine, wanted);
    c->engine = std::move(submitted.engine);
    c->streams = std::move(submitted.streams);
    if (c->streams.empty()) {
      res.set_header("Retry-After", "1");
      return send_error(res, ApiError(503, "every slot and the queue are taken (or the server is stopping); retry "
                                           "shortly", "server_error", "", "overloaded"));
    }
    c->id = random_id();
    c->model = model_id_;
    c->created = static_cast<int64_t>(std::time(nullptr));
    if (!r.substitutions.empty())
      res.set_header(kSubstitutionsHeader, charrnn::describe_substitutions_ascii(r.substitutions));
    if (r.stream) return stream(c, res);

    std::vector<ChoiceText> choices;
    for (size_t i = 0; i < c->streams.size(); ++i) {
      ChoiceText choice;
      choice.index = static_cast<int64_t>(i);
      while (!c->streams[i]->wait_ended(std::chrono::milliseconds(100))) {
      }
      std::vector<TokenLogprob> logprobs;
      c->streams[i]->read(choice.text, std::chrono::milliseconds(0), &logprobs);  // the echoed prompt first
      if (r.logprobs) choice.logprobs = logprobs_json(logprobs, c->engine->checkpoint().vocab, 0);
      choice.finish_reason = c->streams[i]->finish_reason();
      choices.push_back(std::move(choice));
    }
    nlohmann::ordered_json response =
        completion_body(c->id, c->created, c->model, std::move(choices), Usage{c->prompt_chars, c->generated()});
    if (!r.substitutions.empty()) response["prompt_substitutions"] = substitutions_json(r.substitutions);
    res.set_content(response.dump(), "application/json");
    finished(*c);
  }

  // Server-Sent Events: a chunk per choice as its text arrives, a last chunk
  // with its finish_reason, then [DONE]. A client that goes away cancels its
  // streams, which frees their slots at the next step.
  void stream(const std::shared_ptr<Completion>& c, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto ended = std::make_shared<std::vector<char>>(c->streams.size(), 0);
    // per choice, the characters sent so far: the next chunk's first text_offset
    auto offsets = std::make_shared<std::vector<int64_t>>(c->streams.size(), 0);
    auto last_sent = std::make_shared<Clock::time_point>();
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, c, ended, offsets, last_sent](size_t, httplib::DataSink& sink) {
          std::vector<TokenLogprob> logprobs;
          const auto send = [&](size_t i, const std::string& text, const std::string& reason) {
            ChoiceText choice{static_cast<int64_t>(i), text, reason, std::nullopt};
            if (c->request.logprobs) {  // each chunk carries its characters' numbers
              choice.logprobs = logprobs_json(logprobs, c->engine->checkpoint().vocab, (*offsets)[i]);
              (*offsets)[i] += static_cast<int64_t>(logprobs.size());
            }
            std::vector<ChoiceText> one;
            one.push_back(std::move(choice));
            const std::string event =
                "data: " + completion_body(c->id, c->created, c->model, std::move(one), std::nullopt).dump() + "\n\n";
            logprobs.clear();
            return sink.write(event.data(), event.size());
          };
          const auto cancel_all = [&] {
            for (const auto& s : c->streams) s->cancel();
            return false;
          };
          if (!sink.is_writable()) return cancel_all();
          // text that comes within a frame of the last event goes out with
          // the next one: a stream makes thousands of characters a second,
          // and an event per character costs the server and its client
          // more than generating it
          if (*last_sent != Clock::time_point{}) {
            // the last text goes out when its stream ends, not at the next
            // tick: a short request would otherwise wait up to an interval
            const auto due = *last_sent + stream_interval_;
            for (size_t i = 0; i < c->streams.size(); ++i)
              if (!(*ended)[i]) {
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now());
                if (left.count() > 0) c->streams[i]->wait_ended(left);
                break;
              }
          }
          *last_sent = Clock::now();
          bool waited = false;
          for (size_t i = 0; i < c->streams.size(); ++i) {
            if ((*ended)[i]) continue;
            std::string text;
            // wait on the first running choice, look at the others
            const bool running = c->streams[i]->read(text, std::chrono::milliseconds(waited ? 0 : 50), &logprobs);
            waited = true;
            if (!text.empty() && !send(i, text, "")) return cancel_all();
            if (!running) {
              (*ended)[i] = 1;
              if (!send(i, "", c->streams[i]->finish_reason())) return cancel_all();
            }
          }
          if (std::all_of(ended->begin(), ended->end(), [](char e) { return e != 0; })) {
            static const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
          }
          return true;
        },
        [this, c](bool) {
          for (const auto& s : c->streams) s->cancel();  // no-op for those that ended
          finished(*c);
        });
  }

  void finished(const Completion& c) {
    metrics_.add_generated(c.generated());
    metrics_.observe_request(seconds_since(c.start));
    const double first = c.first_char_seconds();
    if (first >= 0) metrics_.observe_first_char(first);
  }

  std::string checkpoint_path_;
  ServeEngineOptions engine_options_;
  ServedModel served_;  // the current model, and its reload
  bool watch_ = false;
  httplib::Server http_;
  ServerMetrics metrics_;
  ServeLimits limits_;
  std::string host_, api_key_, cors_origin_, model_id_;
  int port_ = 8080;
  std::chrono::milliseconds stream_interval_{10};
  size_t max_body_ = 0;
};

}  // namespace

int cmd_serve(int argc, char** argv) {
  cxxopts::Options options("charrnn serve", "Serve a model over HTTP: OpenAI's /v1/completions, streaming, a playground.");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("host", "address to listen on; 127.0.0.1 keeps it to this machine",
       cxxopts::value<std::string>()->default_value("127.0.0.1"))
      ("port", "port; 0 picks a free one (printed)", cxxopts::value<std::string>())
      ("slots", "streams generated together at most (default 64)", cxxopts::value<std::string>())
      ("queue", "streams waiting for a slot at most; past it, 503 (default 256)", cxxopts::value<std::string>())
      ("api-key", "require \"Authorization: Bearer KEY\" on every route but /health and the page at / (or set CHARRNN_API_KEY)",
       cxxopts::value<std::string>())
      ("max-length", "max_tokens a request may ask for (default 10000)", cxxopts::value<std::string>())
      ("max-body", "largest request body in bytes; past it, 413 (default 1 MiB)", cxxopts::value<std::string>())
      ("stream-interval", "streaming: the text of this many milliseconds goes out as one event (default 10; 0: an event "
                          "per read, as soon as there is text)", cxxopts::value<std::string>())
      ("timeout", "seconds a client may leave the server waiting for its next byte, or for reading what it was sent, "
                  "before it is cut off (default 10)", cxxopts::value<std::string>())
      ("cors-origin", "send CORS headers allowing this origin (none by default)", cxxopts::value<std::string>())
      ("watch", "reload the model when the checkpoint file is replaced (training renames each new one into place)")
      ("strict-prompts", "a prompt character the model never saw is a 400, instead of being replaced by an equivalent "
                         "it knows (' for \u2019, - for \u2013, ...)");
  const auto args = parse(options, argc, argv);
  charrnn::configure_threads(0);
  Server server(args);
  return server.run();
}

}  // namespace charrnn::cli
