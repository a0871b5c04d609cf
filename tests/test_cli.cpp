// End-to-end tests: run the real charrnn binary as a user would and check
// exit codes, messages and files. Each test works in its own temporary
// folder with a corpus it writes itself.
#include "cli_fixture.h"

#include <cctype>

namespace {

using namespace charrnn_cli_test;

class CliCell : public Cli, public ::testing::WithParamInterface<std::string> {};

TEST_P(CliCell, TrainingLossFallsAndTheModelGenerates) {
  train_ok({"--set", "model.cell=" + GetParam(), "--set", "train.steps=60", "--set", "train.eval_every=20"});
  const auto metrics = read_metrics(dir_ / "model.metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_LT(metrics.back()["train_loss"].get<double>(), metrics.front()["train_loss"].get<double>());
  EXPECT_LT(metrics.back()["val_loss"].get<double>(), metrics.front()["val_loss"].get<double>());
  EXPECT_TRUE(fs::exists(dir_ / "model.best.pt"));
  // the loss plot next to the checkpoint, one point per evaluation
  const std::string plot = read_all(dir_ / "model.loss.svg");
  EXPECT_NE(plot.find("<polyline class=\"val\""), std::string::npos) << plot;
  // training again from scratch on the same checkpoint starts a new curve
  train_ok({"--set", "model.cell=" + GetParam(), "--set", "train.steps=20", "--set", "train.eval_every=20"});
  EXPECT_EQ(read_metrics(dir_ / "model.metrics.jsonl").size(), 1u);

  const Result g = run({"generate", "--checkpoint", checkpoint(), "--prime", "the sea", "--length", "50"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out.rfind("the sea", 0), 0u) << g.out;
}
INSTANTIATE_TEST_SUITE_P(AllCells, CliCell, ::testing::Values("rnn", "gru", "lstm"));

TEST_F(Cli, GenerateIsReproducibleAndHonoursItsFlags) {
  train_ok();
  const std::vector<std::string> base = {"generate", "--checkpoint", checkpoint(), "--prime", "the", "--length", "80"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const Result a = with({"--seed", "7"}), b = with({"--seed", "7"}), c = with({"--seed", "8"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
  // "the" plus 80 characters plus the closing newline (ASCII corpus)
  EXPECT_EQ(a.out.size(), 3u + 80u + (a.out.back() == '\n' && a.out[a.out.size() - 2] != '\n' ? 1u : 0u));

  const Result g1 = with({"--temperature", "0", "--seed", "1"}), g2 = with({"--temperature", "0", "--seed", "2"});
  EXPECT_EQ(g1.out, g2.out) << "greedy decoding must not depend on the seed";

  const Result k = with({"--top-k", "1", "--seed", "3"});
  EXPECT_EQ(k.out, g1.out) << "top-k 1 is greedy";

  const Result zero = with({"--length", "0"});
  EXPECT_EQ(zero.out, "the\n");

  const Result many = with({"--num-samples", "4", "--stop", "\\n", "--length", "300", "--seed", "5"});
  ASSERT_EQ(many.exit_code, 0) << many.err;
  EXPECT_EQ(std::count(many.out.begin(), many.out.end(), '\n'), 4) << many.out;
}

TEST_F(Cli, EvalReportsLossBitsAndUnknownCharacters) {
  train_ok();
  const std::string held_out = (dir_ / "held_out.txt").string();
  write_all(held_out, make_corpus(3000, 99) + "\xC3\xA9\xE2\x82\xAC!");  // é € and ! are not in the corpus
  const Result r = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["unknown_chars"].get<int64_t>(), 3);
  EXPECT_GT(j["chars"].get<int64_t>(), 2900);
  EXPECT_NEAR(j["bpc"].get<double>(), j["loss"].get<double>() / std::log(2.0), 1e-9);
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["loss"].get<double>()), 1e-6);
  EXPECT_GT(j["loss"].get<double>(), 0.0);

  const Result text = run({"eval", "--checkpoint", checkpoint(), "--data", held_out});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("bpc"), std::string::npos);
}

TEST_F(Cli, EvalDynamicPrintsTheAdaptedLossBesideTheStaticOne) {
  train_ok();
  const std::string held_out = (dir_ / "held_out.txt").string();
  write_all(held_out, make_corpus(2000, 98));
  const auto eval_json = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto d = eval_json({"--dynamic", "--dynamic-lr", "0.003", "--dynamic-decay", "0.01", "--dynamic-segment", "40"});
  // the static loss is the one-stream carried one, in windows of a segment
  const auto carried = eval_json({"--streams", "1", "--window", "40"});
  EXPECT_DOUBLE_EQ(d["loss"].get<double>(), carried["loss"].get<double>());
  EXPECT_EQ(d["streams"].get<int64_t>(), 1);
  EXPECT_NEAR(d["dynamic_gain"].get<double>(), d["loss"].get<double>() - d["loss_dynamic"].get<double>(), 1e-12);
  EXPECT_NE(d["loss_dynamic"].get<double>(), d["loss"].get<double>());
  EXPECT_EQ(d["dynamic_segment"].get<int64_t>(), 40);
  EXPECT_DOUBLE_EQ(d["dynamic_lr"].get<double>(), 0.003);
  const auto still = eval_json({"--dynamic", "--dynamic-lr", "0"});
  EXPECT_NEAR(still["loss_dynamic"].get<double>(), still["loss"].get<double>(), 1e-5);

  const Result text = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--dynamic"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("dynamic     "), std::string::npos) << text.out;

  const std::vector<std::string> base = {"eval", "--checkpoint", checkpoint(), "--data", held_out};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  expect_clean_error(with({"--dynamic-lr", "0.01"}), 2, "need --dynamic");
  expect_clean_error(with({"--dynamic", "--dynamic-lr", "-1"}), 2, "--dynamic-lr");
  expect_clean_error(with({"--dynamic", "--dynamic-segment", "0"}), 2, "--dynamic-segment");
  expect_clean_error(with({"--dynamic", "--dynamic-decay", "2"}), 2, "--dynamic-decay");
  expect_clean_error(with({"--dynamic", "--streams", "4"}), 2, "one stream");
  expect_clean_error(with({"--dynamic", "--per-char", (dir_ / "p.jsonl").string()}), 2, "--per-char");
}

TEST_F(Cli, GenerateAdaptIsReproducibleAndLeavesTheCheckpointAlone) {
  train_ok();
  const std::string before = read_all(checkpoint());
  const std::string prime = make_corpus(600, 97);
  const std::vector<std::string> base = {"generate", "--checkpoint", checkpoint(), "--prime", prime,
                                         "--length",  "300",        "--seed",     "7"};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const Result plain = with({});
  const Result a = with({"--adapt", "--dynamic-lr", "0.01", "--dynamic-segment", "25"});
  const Result b = with({"--adapt", "--dynamic-lr", "0.01", "--dynamic-segment", "25"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind(prime, 0), 0u);
  EXPECT_EQ(a.out.size(), plain.out.size());  // ASCII: the prime, 300 characters and a newline
  EXPECT_NE(a.out, plain.out);
  EXPECT_EQ(read_all(checkpoint()), before);
  const Result defaults = with({"--adapt"});
  ASSERT_EQ(defaults.exit_code, 0) << defaults.err;

  expect_clean_error(with({"--adapt", "--num-samples", "2"}), 2, "one sample at a time");
  expect_clean_error(with({"--dynamic-lr", "0.01"}), 2, "need --adapt");
  expect_clean_error(with({"--adapt", "--dynamic-lr", "x"}), 2, "--dynamic-lr");
}

TEST_F(Cli, EvalPerCharWritesOneLinePerPredictedCharacter) {
  train_ok();
  // é and € are not in the corpus: skipped, but they still count in the offsets
  const std::string a = make_corpus(700, 5), b = make_corpus(500, 6);
  const std::string held_out = (dir_ / "held_out.txt").string(), lines_path = (dir_ / "out/chars.jsonl").string();
  write_all(held_out, "\xC3\xA9" + a + "\xE2\x82\xAC" + b);
  const Result r = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json", "--window", "37",
                        "--per-char", lines_path, "--top-k", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["streams"].get<int64_t>(), 1);
  const int64_t predicted = static_cast<int64_t>(a.size() + b.size()) - 1;  // all known characters but the first
  EXPECT_EQ(summary["chars"].get<int64_t>(), predicted);

  std::istringstream in(read_all(lines_path));
  std::string line;
  int64_t count = 0;
  double sum = 0;
  int64_t offset = 1;  // offset 0 is é, and the first known character (offset 1) has no prediction
  while (std::getline(in, line)) {
    SCOPED_TRACE(line);
    ASSERT_EQ(line.rfind("{\"offset\":", 0), 0u);
    const auto j = nlohmann::json::parse(line);
    if (++offset == static_cast<int64_t>(a.size()) + 1) ++offset;  // €
    ASSERT_EQ(j["offset"].get<int64_t>(), offset);
    const size_t at = static_cast<size_t>(offset <= static_cast<int64_t>(a.size()) ? offset - 1 : offset - 2 - static_cast<int64_t>(a.size()));
    EXPECT_EQ(j["char"].get<std::string>(), std::string(1, (offset <= static_cast<int64_t>(a.size()) ? a : b)[at]));
    const double logprob = j["logprob"].get<double>();
    EXPECT_LE(logprob, 0.0);
    sum += logprob;
    ASSERT_EQ(j["top"].size(), 3u);
    EXPECT_GE(j["top"][0][1].get<double>(), j["top"][1][1].get<double>());
    EXPECT_GE(j["top"][1][1].get<double>(), j["top"][2][1].get<double>());
    EXPECT_GE(j["top"][0][1].get<double>(), logprob);
    ++count;
  }
  EXPECT_EQ(count, predicted);
  EXPECT_NEAR(-sum / static_cast<double>(count), summary["loss"].get<double>(), 1e-5);

  // the same loss as eval with one stream and the same window
  const Result plain = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json", "--window", "37",
                            "--streams", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NEAR(nlohmann::json::parse(plain.out)["loss"].get<double>(), summary["loss"].get<double>(), 1e-5);

  // bad values are usage errors, and leave no file behind
  const std::string other = (dir_ / "other.jsonl").string();
  for (const std::string bad : {"-1", "100000"})
    expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--per-char", other, "--top-k", bad}),
                       2, "--top-k must be");
  expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--top-k", "3"}), 2,
                     "--top-k needs --per-char");
  expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--per-char", other, "--streams", "4"}),
                     2, "--streams must be 1");
  EXPECT_FALSE(fs::exists(other));
}

TEST_F(Cli, InspectWritesItsPageAndNamesBadFlags) {
  train_ok({"--set", "train.steps=20"});
  const std::string page = (dir_ / "pages/inspect.html").string();
  const Result r = run({"inspect", "--checkpoint", checkpoint(), "--data", corpus_, "--out", page, "--max-chars",
                        "700", "--top", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("700 characters read", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("wrote " + page), std::string::npos) << r.out;
  const std::string html = read_all(page);
  const std::string open = "<script type=\"application/json\" id=\"inspect-data\">";
  const size_t start = html.find(open);
  ASSERT_NE(start, std::string::npos);
  const size_t from = start + open.size();
  const auto data = nlohmann::json::parse(html.substr(from, html.find("</script>", from) - from));
  EXPECT_EQ(data["text"].get<std::string>(), make_corpus(20000).substr(0, 700));
  EXPECT_EQ(data["ranking"].size(), 3u);
  EXPECT_EQ(data["title"], checkpoint());

  const std::string other = (dir_ / "other.html").string();
  const std::vector<std::string> base = {"inspect", "--checkpoint", checkpoint(), "--data", corpus_};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  expect_clean_error(with({"--out", other, "--max-chars", "-1"}), 2, "--max-chars must be >= 0");
  expect_clean_error(with({"--out", other, "--max-chars", "lots"}), 2, "--max-chars must be an integer");
  expect_clean_error(with({"--out", other, "--top", "0"}), 2, "--top must be >= 1");
  expect_clean_error(with({"--out", other, "--top", "1.5"}), 2, "--top must be an integer");
  expect_clean_error(with({}), 2, "--out is required");
  expect_clean_error(run({"inspect", "--checkpoint", checkpoint(), "--out", other}), 2, "--data is required");
  expect_clean_error(run({"inspect", "--data", corpus_, "--out", other}), 2, "--checkpoint is required");
  const std::string unknown = (dir_ / "unknown.txt").string();
  write_all(unknown, "\xE2\x82\xAC\xE2\x82\xAC!");  // the model knows none of these
  expect_clean_error(run({"inspect", "--checkpoint", checkpoint(), "--data", unknown, "--out", other}), 2,
                     "needs at least 2 characters the model knows");
  EXPECT_FALSE(fs::exists(other));
}

TEST_F(Cli, EvalHtmlWritesTheSurprisalPage) {
  train_ok();
  const std::string a = make_corpus(900, 7);
  const std::string held_out = (dir_ / "held_out.txt").string(), page = (dir_ / "out/page.html").string();
  write_all(held_out, a + "\xE2\x82\xAC");  // € is unknown: on the page, unscored
  const Result r = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json", "--window", "37", "--html", page});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  const std::string html = read_all(page);
  const std::string open = "<script type=\"application/json\" id=\"summary\">";
  const size_t at = html.find(open);
  ASSERT_NE(at, std::string::npos);
  const auto shown = nlohmann::json::parse(html.substr(at + open.size(), html.find("</script>", at) - at - open.size()));
  EXPECT_DOUBLE_EQ(shown["bpc"].get<double>(), summary["bpc"].get<double>());
  EXPECT_EQ(shown["scored"], summary["chars"]);
  EXPECT_EQ(shown["unknown"].get<int64_t>(), 1);
  EXPECT_EQ(shown["chars"].get<int64_t>(), static_cast<int64_t>(a.size()) + 1);
  // the same figures as eval reading the whole text as one stream
  const Result plain = run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--json", "--window", "37",
                            "--streams", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto whole = nlohmann::json::parse(plain.out);
  EXPECT_NEAR(whole["loss"].get<double>(), summary["loss"].get<double>(), 1e-5);
  EXPECT_NEAR(whole["loss_chunked"].get<double>(), summary["loss_chunked"].get<double>(), 1e-5);
  EXPECT_EQ(whole["unknown_chars"], summary["unknown_chars"]);

  // refusals leave no page behind
  const std::string other = (dir_ / "other.html").string();
  expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", held_out, "--html", other, "--streams", "4"}),
                     2, "--html reads the text as one stream");
  const std::string unknown_only = (dir_ / "unknown.txt").string();
  write_all(unknown_only, "\xE2\x82\xAC\xE2\x82\xAC" "a");
  expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", unknown_only, "--html", other}), 2,
                     "needs at least 2 characters the model knows");
  EXPECT_FALSE(fs::exists(other));
}

TEST_F(Cli, InfoShowsWhatTheCheckpointHolds) {
  train_ok({"--set", "train.steps=20"});
  const Result r = run({"info", "--checkpoint", checkpoint()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* needle : {"parameters", "vocabulary", "step           20", "best val loss", "\"hidden_size\""})
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << " missing from:\n" << r.out;
  const Result j = run({"info", "--checkpoint", checkpoint(), "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto info = nlohmann::json::parse(j.out);
  EXPECT_EQ(info["step"].get<int64_t>(), 20);
  EXPECT_GT(info["parameters"].get<int64_t>(), 0);
  EXPECT_EQ(info["config"]["data"]["path"].get<std::string>(), corpus_);
}

TEST_F(Cli, TrainNamesTheWeightAverageAndInfoShowsIt) {
  const Result r = run(train_args({"--set", "train.steps=20", "--set", "train.ema_decay=0.9", "--set", "train.ema_start=0.5"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("weights averaged (EMA 0.9) from 50% of the run"), std::string::npos) << r.err;
  const Result info = run({"info", "--checkpoint", checkpoint()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("weights        the average of the training weights (train.ema_decay 0.9)"),
            std::string::npos)
      << info.out;
  EXPECT_TRUE(nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out)["averaged_weights"]);
  // averaging off: no such line, and the file as before
  train_ok({"--set", "train.steps=20"});
  EXPECT_EQ(run({"info", "--checkpoint", checkpoint()}).out.find("weights        "), std::string::npos);
  EXPECT_FALSE(nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out)["averaged_weights"]);
}

TEST_F(Cli, ResumeContinuesWhereTrainingStopped) {
  train_ok({"--set", "train.steps=20"});
  const Result r = run({"train", "--resume", checkpoint(), "--set", "train.steps=40"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming"), std::string::npos);
  const auto info = nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out);
  EXPECT_EQ(info["step"].get<int64_t>(), 40);

  // a resumed run keeps the model's shape, and says so
  expect_clean_error(run({"train", "--resume", checkpoint(), "--set", "train.steps=60", "--set", "model.hidden_size=64"}),
                     2, "model.hidden_size");
  // already finished
  expect_clean_error(run({"train", "--resume", checkpoint()}), 2, "already at step 40");
}

TEST_F(Cli, InterruptSavesACheckpointAndExitsCleanly) {
  interrupt_training_with(SIGINT);
  const Result info = run({"info", "--checkpoint", checkpoint(), "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_GT(nlohmann::json::parse(info.out)["step"].get<int64_t>(), 0);
}

TEST_F(Cli, ExportIsUsableByGenerateEvalAndInfo) {
  train_ok({"--set", "train.steps=20"});
  const std::string exported = (dir_ / "exports" / "model.ts.pt").string();
  const Result e = run({"export", "--checkpoint", checkpoint(), "--out", exported});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const std::vector<std::string> gen = {"--prime", "the sea", "--length", "60", "--seed", "4"};
  std::vector<std::string> a = {"generate", "--checkpoint", exported}, b = {"generate", "--checkpoint", checkpoint()};
  a.insert(a.end(), gen.begin(), gen.end());
  b.insert(b.end(), gen.begin(), gen.end());
  const Result from_export = run(a), from_checkpoint = run(b);
  ASSERT_EQ(from_export.exit_code, 0) << from_export.err;
  EXPECT_EQ(from_export.out, from_checkpoint.out);
  const Result info = run({"info", "--checkpoint", exported, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["step"].get<int64_t>(), 20);
  const Result ev = run({"eval", "--checkpoint", exported, "--data", corpus_, "--json"});
  ASSERT_EQ(ev.exit_code, 0) << ev.err;
  // no temporary file is left beside the export
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir_ / "exports")) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);

  expect_clean_error(run({"export", "--checkpoint", checkpoint()}), 2, "--out is required");
  write_all(dir_ / "junk.pt", "junk");
  expect_clean_error(run({"export", "--checkpoint", (dir_ / "junk.pt").string(), "--out", exported}), 1,
                     "not a charrnn checkpoint");
}

// --- bad input: every case is a clean error with the right exit status ---

TEST_F(Cli, MissingConfigFile) {
  expect_clean_error(run({"train", "--config", (dir_ / "nope.json").string()}), 2, "nope.json");
}

TEST_F(Cli, InvalidJson) {
  write_all(dir_ / "bad.json", "{ \"model\": { \"cell\": \"lstm\", } ");
  expect_clean_error(run({"train", "--config", (dir_ / "bad.json").string()}), 2, "invalid JSON");
}

TEST_F(Cli, UnknownConfigKeyIsNamed) {
  write_all(dir_ / "typo.json", R"({"model": {"hiden_size": 32}})");
  expect_clean_error(run({"train", "--config", (dir_ / "typo.json").string()}), 2, "model.hiden_size");
}

TEST_F(Cli, WrongTypeIsNamed) {
  write_all(dir_ / "type.json", R"({"train": {"steps": "many"}})");
  expect_clean_error(run({"train", "--config", (dir_ / "type.json").string()}), 2, "train.steps must be an integer");
}

TEST_F(Cli, UnknownSetKeyAndBadValues) {
  expect_bad_setting("train.stepz=3", "train.stepz");
  expect_bad_setting("model.cell=lstn", "model.cell must be one of rnn, gru, lstm");
  expect_bad_setting("model.hidden_size=0", "model.hidden_size must be >= 1");
  expect_bad_setting("train.learning_rate=-1", "train.learning_rate");
  expect_bad_setting("data.val_fraction=1", "data.val_fraction");
  expect_bad_setting("train.batch_size=-3", "train.batch_size");
}

TEST_F(Cli, HugeModelIsRefusedWithAnEstimate) {
  expect_clean_error(run(train_args({"--set", "model.hidden_size=200000", "--set", "model.num_layers=8"})), 2,
                     "GB");
}

TEST_F(Cli, EmptyCorpus) {
  write_all(dir_ / "empty.txt", "");
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "empty.txt").string()})), 2, "empty");
}

TEST_F(Cli, CorpusShorterThanSeqLength) {
  write_all(dir_ / "short.txt", "just a few words");
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "short.txt").string()})), 2,
                     "train.seq_length");
}

TEST_F(Cli, MissingCorpus) {
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "missing.txt").string()})), 1, "missing.txt");
}

TEST_F(Cli, InvalidUtf8CorpusGivesTheByteOffset) {
  write_all(dir_ / "latin1.txt", make_corpus(500) + "caf\xE9 au lait");
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "latin1.txt").string()})), 1,
                     "byte offset " + std::to_string(make_corpus(500).size() + 3));
}

TEST_F(Cli, BinaryCorpusIsRefused) {
  write_all(dir_ / "binary.txt", make_corpus(500) + std::string("\0\x01\x02", 3));
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "binary.txt").string()})), 1, "NUL byte");
}

TEST_F(Cli, PrimeWithUnseenCharacters) {
  train_ok({"--set", "train.steps=2"});
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--prime", "Zebra\xE2\x82\xAC"}), 2,
                     "never saw in training: 'Z' (U+005A LATIN CAPITAL LETTER Z), 'b' (U+0062 LATIN SMALL LETTER B), "
                     "'\xE2\x82\xAC' (U+20AC EURO SIGN)");
}

TEST_F(Cli, BadGenerateArguments) {
  train_ok({"--set", "train.steps=2"});
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--length", "-5"}), 2, "--length");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--length", "many"}), 2, "length");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--num-samples", "0"}), 2, "--num-samples");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--top-p", "0"}), 2, "--top-p");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--prime", "the", "stray"}), 2, "stray");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--bogus"}), 2, "bogus");
}

TEST_F(Cli, SamplingFlagsAreCheckedAgainstTheSharedRanges) {
  train_ok({"--set", "train.steps=2"});
  const std::vector<std::string> generate = {"generate", "--checkpoint", checkpoint(), "--length", "5"};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = generate;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  expect_clean_error(with({"--top-p", "7"}), 2, "--top-p must be a number in (0, 1]");  // a user who typed 7 meant 0.7
  expect_clean_error(with({"--top-k", "-1"}), 2, "--top-k must be an integer >= 0");
  expect_clean_error(with({"--temperature", "-0.5"}), 2, "--temperature must be a number in [0, 2]");
  expect_clean_error(with({"--temperature", "0.5,3"}), 2, "--temperature must be a number in [0, 2]");
  expect_clean_error(with({"--temperature", "nan"}), 2, "--temperature");
  EXPECT_EQ(with({"--top-p", "1", "--top-k", "0", "--temperature", "2"}).exit_code, 0);
  expect_clean_error(run(train_args({"--set", "sample.top_p=7"})), 2, "sample.top_p must be a number in (0, 1]");
  // chat reports a bad setting and carries on
  const Result chat = run({"chat", "--checkpoint", checkpoint(), "--length", "5", "--temperature", "0"},
                          ":topp 7\n:temp 9\nthe\n");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_NE(chat.err.find(":topp must be a number in (0, 1]"), std::string::npos) << chat.err;
  EXPECT_NE(chat.err.find(":temp must be a number in [0, 2]"), std::string::npos) << chat.err;
  EXPECT_EQ(chat.out.rfind("the", 0), 0u) << chat.out;
}

TEST_F(Cli, PrimeFromAFile) {
  train_ok({"--set", "train.steps=2"});
  write_all(dir_ / "prime.txt", "the sea\nand the whale ");
  const std::vector<std::string> greedy = {"generate", "--checkpoint", checkpoint(), "--length", "30",
                                           "--temperature", "0"};
  auto from_file = greedy;
  from_file.insert(from_file.end(), {"--prime-file", (dir_ / "prime.txt").string()});
  auto literal = greedy;
  literal.insert(literal.end(), {"--prime", "the sea\nand the whale "});
  const Result a = run(from_file), b = run(literal);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out) << "the file's text, exactly, is the prime";
  EXPECT_EQ(a.out.rfind("the sea\nand the whale ", 0), 0u);
  // --prime is always literal, even when it looks like a file reference
  auto at = greedy;
  at.insert(at.end(), {"--prime", "@" + (dir_ / "prime.txt").string()});
  expect_clean_error(run(at), 2, "--prime contains");
  auto both = from_file;
  both.insert(both.end(), {"--prime", "the"});
  expect_clean_error(run(both), 2, "not both");
  auto missing = greedy;
  missing.insert(missing.end(), {"--prime-file", (dir_ / "none.txt").string()});
  expect_clean_error(run(missing), 1, "none.txt");
  write_all(dir_ / "latin1.txt", "the caf\xE9");
  auto latin1 = greedy;
  latin1.insert(latin1.end(), {"--prime-file", (dir_ / "latin1.txt").string()});
  expect_clean_error(run(latin1), 1, "byte offset 7");
  write_all(dir_ / "unseen.txt", "Zebra");
  auto unseen = greedy;
  unseen.insert(unseen.end(), {"--prime-file", (dir_ / "unseen.txt").string()});
  expect_clean_error(run(unseen), 2, "--prime-file " + (dir_ / "unseen.txt").string() + " contains");
  // chat: :prime-file continues the file's text, several lines and all
  const Result chat = run({"chat", "--checkpoint", checkpoint(), "--length", "30", "--temperature", "0"},
                          ":prime-file " + (dir_ / "prime.txt").string() + "\n:prime-file " +
                              (dir_ / "none.txt").string() + "\n");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_EQ(chat.out, a.out);
  EXPECT_NE(chat.err.find("none.txt"), std::string::npos) << chat.err;
}

TEST_F(Cli, FolderCorpusTrainsEvaluatesAndValidatesOnWholeDocuments) {
  for (int i = 0; i < 12; ++i) {
    const fs::path folder = dir_ / "songs" / (i % 2 ? "b" : "a");
    fs::create_directories(folder);
    write_all(folder / ("song" + std::to_string(i) + ".txt"), make_corpus(1500, static_cast<unsigned>(i + 2)));
  }
  write_all(dir_ / "songs" / "README.md", "not a song");
  const Result r = run(train_args({"--set", "data.path=" + (dir_ / "songs").string(), "--set", "data.glob=*.txt",
                                   "--set", "data.val_split=documents", "--set", "train.steps=4",
                                   "--set", "train.eval_every=2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // the encoded corpus is in the cache folder, named for its source, not beside the checkpoint
  EXPECT_FALSE(fs::exists(dir_ / "songs.ids"));
  bool cached = false;
  for (const auto& entry : fs::directory_iterator(dir_ / "cache" / "charrnn"))
    cached = cached || entry.path().filename().string().rfind("songs-", 0) == 0;
  EXPECT_TRUE(cached);
  const nlohmann::json info = nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out);
  EXPECT_EQ(info["config"]["data"]["val_split"], "documents");
  EXPECT_EQ(info["config"]["data"]["glob"], "*.txt");
  // eval takes the same forms: a folder with a glob, or several --data
  const Result folder = run({"eval", "--checkpoint", checkpoint(), "--data", (dir_ / "songs").string(), "--glob",
                             "*.txt", "--json"});
  ASSERT_EQ(folder.exit_code, 0) << folder.err;
  const Result two = run({"eval", "--checkpoint", checkpoint(), "--data", (dir_ / "songs/a/song0.txt").string(),
                          "--data", (dir_ / "songs/b/song1.txt").string(), "--json"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_GT(nlohmann::json::parse(folder.out)["chars"].get<int64_t>(),
            nlohmann::json::parse(two.out)["chars"].get<int64_t>());
  expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", (dir_ / "songs").string(), "--glob",
                          "*.lyrics"}),
                     2, "no file");
  // a list of paths, as JSON in --set
  const Result list = run(train_args({"--set", R"(data.path=[")" + (dir_ / "songs/a").string() + R"(", ")" +
                                                 (dir_ / "songs/b/song1.txt").string() + R"("])",
                                      "--set", "train.steps=2"}));
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.err.find("(2 paths)"), std::string::npos) << list.err;
}

TEST_F(Cli, FineTuneFromACheckpointOntoTextWithNewCharacters) {
  train_ok({"--set", "train.steps=20"});
  std::string german;
  while (german.size() < 8000) german += "the sea gr\xC3\xBCn the whale sch\xC3\xB6n and old.\n";  // only the umlauts are new
  write_all(dir_ / "de.txt", german);
  const std::string tuned = (dir_ / "tuned.pt").string();
  // resuming onto it is refused, and says what to do instead
  expect_error_after_progress(run({"train", "--resume", checkpoint(), "--set", "data.path=" + (dir_ / "de.txt").string(),
                                   "--set", "train.steps=40"}),
                              2, "--init-from");
  const std::vector<std::string> fine_tune = {"train", "--config", std::string(CHARRNN_SOURCE_DIR) + "/configs/tiny.json",
                                              "--init-from", checkpoint(), "--set",
                                              "data.path=" + (dir_ / "de.txt").string(), "--set",
                                              "train.checkpoint=" + tuned, "--set", "train.device=cpu",
                                              "--set", "train.steps=30", "--set", "train.eval_every=10"};
  const Result r = run(fine_tune);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("fine-tuning " + checkpoint()), std::string::npos) << r.err;
  // the config file names its rate: the fine-tune keeps it
  EXPECT_NE(r.err.find("tiny.json's recipe and length: random batching, constant lr 0.01;"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("adds 2 character(s)"), std::string::npos) << r.err;
  const std::vector<nlohmann::json> metrics = read_metrics(dir_ / "tuned.metrics.jsonl");
  ASSERT_GE(metrics.size(), 2u);
  EXPECT_EQ(metrics.front()["step"], 10) << "a fine-tune counts from step 0";
  const Result text = run({"generate", "--checkpoint", tuned, "--prime", "sch\xC3\xB6n gr\xC3\xBCn", "--length", "20"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("sch\xC3\xB6n gr\xC3\xBCn", 0), 0u);
  const Result info = run({"info", "--checkpoint", tuned});
  EXPECT_NE(info.out.find("initialised    from " + checkpoint() + " (step 20"), std::string::npos) << info.out;
  const nlohmann::json j = nlohmann::json::parse(run({"info", "--checkpoint", tuned, "--json"}).out);
  ASSERT_EQ(j["init_from"].size(), 1u);
  EXPECT_EQ(j["init_from"][0]["added_chars"], "\xC3\xB6\xC3\xBC");
  EXPECT_EQ(j["init_from"][0]["step"], 20);
  // resuming the fine-tune keeps its lineage
  const Result resumed = run({"train", "--resume", tuned, "--set", "train.steps=40"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(run({"info", "--checkpoint", tuned, "--json"}).out)["init_from"].size(), 1u);

  // a config that asks for another shape names the key; both flags at once, or overwriting the base, are refused
  auto other_shape = fine_tune;
  other_shape.insert(other_shape.end(), {"--set", "model.hidden_size=64"});
  expect_clean_error(run(other_shape), 2, "model.hidden_size");
  expect_clean_error(run({"train", "--resume", tuned, "--init-from", checkpoint()}), 2, "one of them");
  auto overwrite = fine_tune;
  overwrite.insert(overwrite.end(), {"--set", "train.checkpoint=" + checkpoint()});
  expect_clean_error(run(overwrite), 2, "overwrite");
  expect_clean_error(run({"train", "--init-from", (dir_ / "none.pt").string()}), 1, "none.pt");
}

TEST_F(Cli, MissingAndCorruptCheckpoints) {
  expect_clean_error(run({"generate", "--checkpoint", (dir_ / "none.pt").string()}), 1, "none.pt");
  expect_clean_error(run({"generate"}), 2, "--checkpoint is required");
  write_all(dir_ / "text.pt", "this is not a checkpoint");
  expect_clean_error(run({"info", "--checkpoint", (dir_ / "text.pt").string()}), 1, "not a charrnn checkpoint");
  write_all(dir_ / "empty.pt", "");
  expect_clean_error(run({"eval", "--checkpoint", (dir_ / "empty.pt").string(), "--data", corpus_}), 1, "empty");
  train_ok({"--set", "train.steps=2"});
  const std::string whole = read_all(checkpoint());
  write_all(dir_ / "truncated.pt", whole.substr(0, whole.size() / 2));
  expect_clean_error(run({"generate", "--checkpoint", (dir_ / "truncated.pt").string()}), 1, "corrupt or truncated");
}

TEST_F(Cli, UsageErrors) {
  expect_clean_error(run({"fly"}), 2, "unknown command");
  expect_clean_error(run({"train"}), 2, "--config");
  expect_clean_error(run({"eval", "--checkpoint", "x.pt"}), 2, "--data is required");
  const Result none = run({});
  EXPECT_EQ(none.exit_code, 2);
  const Result help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("generate"), std::string::npos);
}

TEST_F(Cli, CudaRequestedWithoutCuda) {
  // CI has no GPU; where one exists this case does not apply.
  if (run({"train", "--help"}).exit_code != 0) GTEST_SKIP();
  const Result r = run(train_args({"--set", "train.device=cuda", "--set", "train.steps=1"}));
  if (r.exit_code == 0) GTEST_SKIP() << "CUDA is available here";
  expect_clean_error(r, 2, "CUDA is not available");
}

}  // namespace

namespace {

using namespace charrnn_cli_test;

TEST_F(Cli, TemperatureSweepPrintsOneLabelledSamplePerTemperature) {
  train_ok({"--set", "train.steps=20"});
  const std::vector<std::string> common = {"generate", "--checkpoint", checkpoint(), "--prime", "the", "--length", "40",
                                           "--seed", "5"};
  std::vector<std::string> sweep = common;
  sweep.insert(sweep.end(), {"--temperature", "0.2,0.5,1.0"});
  const Result r = run(sweep);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expected;
  for (const char* t : {"0.2", "0.5", "1.0"}) {
    std::vector<std::string> single = common;
    single.insert(single.end(), {"--temperature", t});
    expected += std::string("=== temperature ") + (std::string(t) == "1.0" ? "1" : t) + " ===\n" + run(single).out;
  }
  EXPECT_EQ(r.out, expected);
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--temperature", "0.5,,1"}), 2, "--temperature");
}

TEST_F(Cli, ChatUnderAPipe) {
  train_ok({"--set", "train.steps=20"});
  const std::string input = "the sea\n:temp 0\n:len 25\nthe sea\nthe sea\n:bogus 3\n:len -1\nthe €\n:seed 9\nthe\n";
  const Result r = run({"chat", "--checkpoint", checkpoint(), "--length", "30", "--seed", "4"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // one continuation per prompt, each starting with its prompt
  std::vector<std::string> lines;
  std::stringstream out(r.out);
  for (std::string line; std::getline(out, line);) lines.push_back(line);
  const Result first = run({"generate", "--checkpoint", checkpoint(), "--prime", "the sea", "--length", "30", "--seed", "4"});
  EXPECT_EQ(r.out.substr(0, first.out.size()), first.out) << "the first prompt continues as generate does";
  const Result greedy = run({"generate", "--checkpoint", checkpoint(), "--prime", "the sea", "--length", "25",
                             "--temperature", "0"});
  EXPECT_NE(r.out.find(greedy.out + greedy.out), std::string::npos) << "greedy twice the same:\n" << r.out;
  const Result last = run({"generate", "--checkpoint", checkpoint(), "--prime", "the", "--length", "25", "--temperature",
                           "0", "--seed", "9"});
  EXPECT_EQ(r.out.substr(r.out.size() - last.out.size()), last.out);
  // bad commands and prompts are reported and the session goes on
  EXPECT_NE(r.err.find("error: unknown command \":bogus\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("error: :len must be an integer >= 0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("never saw"), std::string::npos) << r.err;
  // end of input ends the session cleanly, even with no input at all
  EXPECT_EQ(run({"chat", "--checkpoint", checkpoint()}).exit_code, 0);
}

TEST_F(Cli, ChatOnATerminalUnderTmux) {
  if (std::system("tmux -V >/dev/null 2>&1") != 0) GTEST_SKIP() << "tmux is not installed";
  train_ok({"--set", "train.steps=20"});
  const std::string tmux = "tmux -L " + quote("charrnn_test_" + std::to_string(::getpid()));
  const auto sh = [&](const std::string& command) { return std::system((tmux + " " + command).c_str()); };
  const auto screen = [&] {
    const fs::path capture = dir_ / "screen.txt";
    sh("capture-pane -p -t chat >" + quote(capture.string()));
    return read_all(capture);
  };
  const auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      if (screen().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  const std::string chat = quote(CHARRNN_BIN) + " chat --checkpoint " + quote(checkpoint()) +
                           " --length 20 --temperature 0; echo chat-exited-$?; sleep 30";
  ASSERT_EQ(sh("new-session -d -s chat -x 120 -y 40 " + quote(chat)), 0);
  EXPECT_TRUE(wait_for("Ctrl-D quits")) << screen();
  EXPECT_TRUE(wait_for("this text\n>")) << screen();  // the prompt; the pane drops its trailing blank
  const Result greedy = run({"generate", "--checkpoint", checkpoint(), "--prime", "the sea", "--length", "20",
                             "--temperature", "0"});
  // the pane drops trailing blanks, so compare the first line without them
  std::string continuation = greedy.out.substr(0, greedy.out.find('\n'));
  continuation.erase(continuation.find_last_not_of(' ') + 1);
  sh("send-keys -t chat 'the sea' Enter");
  EXPECT_TRUE(wait_for("> the sea\n" + continuation)) << screen();
  sh("send-keys -t chat ':len 5' Enter");
  sh("send-keys -t chat 'the' Enter");
  EXPECT_TRUE(wait_for("> the\nthe")) << screen();
  sh("send-keys -t chat C-d");
  EXPECT_TRUE(wait_for("chat-exited-0")) << screen();
  sh("kill-server");
}

}  // namespace

namespace {

using namespace charrnn_cli_test;

TEST_F(Cli, PlotComparesRuns) {
  train_ok({"--set", "train.steps=20", "--set", "train.eval_every=10"});
  train_ok({"--set", "train.steps=20", "--set", "train.eval_every=10", "--set",
            "train.checkpoint=" + (dir_ / "other.pt").string(), "--set", "train.learning_rate=0.001"});
  const std::string out = (dir_ / "compare.svg").string();
  const Result r = run({"plot", (dir_ / "model.metrics.jsonl").string(), (dir_ / "other.metrics.jsonl").string(), "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string svg = read_all(out);
  EXPECT_NE(svg.find(">model: train<"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">other: validation<"), std::string::npos) << svg;
  expect_clean_error(run({"plot", (dir_ / "missing.jsonl").string(), "--out", out}), 1, "missing.jsonl");
  expect_clean_error(run({"plot", "--out", out}), 2, "metrics file");
  expect_clean_error(run({"plot", (dir_ / "model.metrics.jsonl").string()}), 2, "--out");
}

}  // namespace

namespace {

using namespace charrnn_cli_test;

// Sets an environment variable for the processes this test starts.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

TEST_F(Cli, BenchReportsTheInstructionSetAndKernelsItRan) {
  const std::vector<std::string> bench = {"bench", "--config", std::string(CHARRNN_SOURCE_DIR) + "/configs/tiny.json",
                                          "--set", "data.path=" + corpus_, "--set", "train.device=cpu",
                                          "--steps", "1", "--warmup", "0", "--gen-chars", "20"};
  {
    const ScopedEnv forced("CHARRNN_ISA", "generic");
    const Result r = run(bench);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto report = nlohmann::json::parse(r.out);
    EXPECT_EQ(report["isa"], "generic") << r.out;
    // the portable path: LibTorch's products for training, the portable
    // tile (row-order-independent sums) for the decoder's parts
    EXPECT_EQ(report["kernels"]["element_wise"], "generic") << r.out;
    EXPECT_NE(report["kernels"]["train_recurrent_product"].get<std::string>().find("libtorch"), std::string::npos)
        << r.out;
    EXPECT_NE(report["kernels"]["decoder_recurrent_product"].get<std::string>().find("portable"), std::string::npos)
        << r.out;
    EXPECT_FALSE(report["cpu"].get<std::string>().empty());
    EXPECT_GT(report["train_chars_per_s"].get<double>(), 0.0);
  }
  const Result r = run(bench);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  EXPECT_EQ(report["isa"], report["cpu_isa"]) << "no cap: the CPU's widest set";
  // OpenBLAS runs kernels that use the CPU's AVX2: where it picked SSE3
  // ones for a CPU it does not know, charrnn restarted with a better core
  const std::string blas = report["kernels"]["blas"].get<std::string>();
  if (report["cpu_isa"] != "generic" && blas.rfind("OpenBLAS", 0) == 0 && !std::getenv("OPENBLAS_CORETYPE")) {
    std::string core = blas.substr(blas.find(' ') + 1);
    std::transform(core.begin(), core.end(), core.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::vector<std::string> avx2_cores = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids",
                                                 "excavator"};
    EXPECT_NE(std::find(avx2_cores.begin(), avx2_cores.end(), core), avx2_cores.end()) << blas;
  }
  {
    // a core the user names is kept, however slow
    const ScopedEnv chosen("OPENBLAS_CORETYPE", "Prescott");
    const Result slow = run(bench);
    ASSERT_EQ(slow.exit_code, 0) << slow.err;
    if (blas.rfind("OpenBLAS", 0) == 0)
      EXPECT_EQ(nlohmann::json::parse(slow.out)["kernels"]["blas"], "OpenBLAS Prescott") << slow.out;
  }

  const ScopedEnv bad("CHARRNN_ISA", "sse9");
  expect_clean_error(run(bench), 2, "CHARRNN_ISA must be avx512, avx2 or generic");
  expect_clean_error(run(train_args()), 2, "CHARRNN_ISA must be avx512, avx2 or generic");
}

// ---- a newcomer's first hour: prompts people type, resume, defaults, messages

// A corpus with curly quotes only, as Moby-Dick has.
std::string curly_corpus() {
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += make_corpus(450, static_cast<unsigned>(i + 3)) + "\nwe don\u2019t saw the \u201Cwhale\u201D.\n";
  return text;
}

TEST_F(Cli, PromptsWithPlainQuotesAreFoldedIntoTheModelsQuotes) {
  write_all(corpus_, curly_corpus());
  train_ok({"--set", "train.steps=2"});
  const auto generate = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate", "--checkpoint", checkpoint(), "--length", "40", "--seed", "3"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const Result typed = generate({"--prime", "we don't saw the \"whale\""});
  ASSERT_EQ(typed.exit_code, 0) << typed.err;
  EXPECT_EQ(typed.out.rfind("we don\u2019t saw the \u201Cwhale\u201D", 0), 0u) << typed.out;
  EXPECT_NE(typed.err.find("note: --prime: replaced 3 character(s) the model never saw: ''' (U+0027 APOSTROPHE) -> "
                           "'\u2019' (U+2019 RIGHT SINGLE QUOTATION MARK)"),
            std::string::npos)
      << typed.err;
  EXPECT_NE(typed.err.find("U+201C LEFT DOUBLE QUOTATION MARK"), std::string::npos) << typed.err;
  // the same text as the model's own characters give, every time
  const Result curly = generate({"--prime", "we don\u2019t saw the \u201Cwhale\u201D"});
  EXPECT_EQ(typed.out, curly.out);
  EXPECT_EQ(curly.err.find("note:"), std::string::npos) << curly.err;
  EXPECT_EQ(generate({"--prime", "we don't saw the \"whale\""}).out, typed.out);
  // --strict keeps the refusal, naming the character by code point
  expect_clean_error(generate({"--prime", "we don't", "--strict"}), 2, "''' (U+0027 APOSTROPHE)");
  // a character with no equivalent is still refused
  expect_clean_error(generate({"--prime", "we \xE2\x82\xAC"}), 2, "(U+20AC EURO SIGN)");
  // chat folds each prompt the same way
  const Result chat = run({"chat", "--checkpoint", checkpoint(), "--length", "40", "--seed", "3"},
                          "we don't saw the \"whale\"\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_NE(chat.out.find(typed.out.substr(0, typed.out.size() - 1)), std::string::npos) << chat.out;
  EXPECT_NE(chat.err.find("note: the prompt: replaced 3 character(s)"), std::string::npos) << chat.err;
  // and an export generates from the folded prime too
  const std::string exported = (dir_ / "model.ts.pt").string();
  ASSERT_EQ(run({"export", "--checkpoint", checkpoint(), "--out", exported}).exit_code, 0);
  const Result from_export = run({"generate", "--checkpoint", exported, "--length", "40", "--seed", "3", "--prime",
                                  "we don't saw the \"whale\""});
  EXPECT_EQ(from_export.out, typed.out) << from_export.err;
}

// CHARRNN_TEST_SECONDS_PER_STEP makes the budget's clock advance a fixed
// time per step, so a time-bounded run's steps do not depend on the machine.
TEST_F(Cli, TimeBoundedRunResumedAfterAnInterruptEndsWhereAnUninterruptedOneEnds) {
  // 0.125 s a step: exact in binary, so 80 steps are exactly the 10 s
  const std::vector<std::string> budget = {"--set", "train.steps=100000", "--set", "train.max_seconds=10",
                                           "--set", "train.eval_every=10", "--set", "train.lr_schedule=cosine",
                                           "--set", "train.min_lr=0.001", "--set", "model.hidden_size=256"};
  const std::vector<std::string> env = {"CHARRNN_TEST_SECONDS_PER_STEP=0.125"};
  const auto wait = [](pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  };
  const auto last_metrics = [&](const std::string& checkpoint_path) {
    std::ifstream in(fs::path(checkpoint_path).replace_extension(".metrics.jsonl"));
    std::string line, last;
    while (std::getline(in, line)) last = line;
    return nlohmann::json::parse(last);
  };
  std::vector<std::string> whole = train_args(budget);
  whole.insert(whole.end(), {"--set", "train.checkpoint=" + (dir_ / "whole.pt").string()});
  ASSERT_EQ(wait(spawn(whole, dir_ / "whole.log", env)), 0) << read_all(dir_ / "whole.log");
  const nlohmann::json uninterrupted = last_metrics((dir_ / "whole.pt").string());
  EXPECT_EQ(uninterrupted["step"], 80);

  const pid_t pid = spawn(train_args(budget), dir_ / "parts.log", env);
  for (int i = 0; i < 6000 && read_all(dir_ / "parts.log").find("step 10/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGINT);
  ASSERT_EQ(wait(pid), 130) << read_all(dir_ / "parts.log");
  const std::string log = read_all(dir_ / "parts.log");
  const int64_t stopped_at = std::stoll(log.substr(log.find("interrupted at step ") + 20));
  EXPECT_GT(stopped_at, 0);
  EXPECT_LT(stopped_at, 80) << log;
  ASSERT_EQ(wait(spawn({"train", "--resume", checkpoint()}, dir_ / "resume.log", env)), 0)
      << read_all(dir_ / "resume.log");
  const nlohmann::json resumed = last_metrics(checkpoint());
  // the same steps, the same point of the schedule, the same weights
  EXPECT_EQ(resumed["step"], uninterrupted["step"]);
  EXPECT_EQ(resumed["lr"], uninterrupted["lr"]);
  EXPECT_DOUBLE_EQ(resumed["elapsed_s"].get<double>(), uninterrupted["elapsed_s"].get<double>());
  EXPECT_EQ(resumed["val_loss"], uninterrupted["val_loss"]);

  // a run whose budget is spent says how to go on
  expect_error_after_progress(run({"train", "--resume", checkpoint()}), 2,
                              "raise it, e.g. --set train.max_seconds=20");
  // and a new total continues it
  ASSERT_EQ(wait(spawn({"train", "--resume", checkpoint(), "--set", "train.max_seconds=11.25"}, dir_ / "more.log", env)),
            0)
      << read_all(dir_ / "more.log");
  EXPECT_EQ(last_metrics(checkpoint())["step"], 90);
}

TEST_F(Cli, TimeBoundedRunWithTheRealClockResumesTheTimeLeft) {
  const pid_t pid = spawn(train_args({"--set", "train.steps=1000000", "--set", "train.max_seconds=4", "--set",
                                      "train.eval_every=1000000"}),
                          dir_ / "train.log");
  for (int i = 0; i < 600 && read_all(dir_ / "train.log").find("recipe:") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << read_all(dir_ / "train.log");
  const auto elapsed = [&] {
    return nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out)["elapsed_seconds"]
        .get<double>();
  };
  const double before = elapsed();
  ASSERT_LT(before, 4.0);
  const auto start = std::chrono::steady_clock::now();
  const Result r = run({"train", "--resume", checkpoint()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // the run's total is the budget (within a step and the final validation),
  // and the resumed process trained what was left, not another 4 s
  EXPECT_GE(elapsed(), 4.0);
  EXPECT_LT(elapsed(), 5.0);
  EXPECT_LT(took, 4.0 - before + 3.0) << r.err;
}

TEST_F(Cli, ProgressShowsTheStepTheTimeLimitEndsAt) {
  const std::vector<std::string> env = {"CHARRNN_TEST_SECONDS_PER_STEP=0.125"};
  const pid_t pid = spawn(train_args({"--set", "train.steps=1000", "--set", "train.max_seconds=3.75", "--set",
                                      "train.eval_every=10"}),
                          dir_ / "train.log", env);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string log = read_all(dir_ / "train.log");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
  EXPECT_NE(log.find("step 10/~30 "), std::string::npos) << log;
  EXPECT_NE(log.find("done: 30 steps"), std::string::npos) << log;
  EXPECT_EQ(log.find("/1000"), std::string::npos) << log;
}

TEST_F(Cli, TrainsWithoutAConfigOnTheBuiltInDefaults) {
  const Result r = run({"train", "--set", "data.path=" + corpus_, "--set", "train.steps=2", "--set",
                        "train.checkpoint=" + checkpoint(), "--set", "model.hidden_size=32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // the built-in defaults are the measured recipe (configs/default.json's)
  EXPECT_NE(r.err.find("training gru 2x32"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sequential batching, linear lr 0.008 -> 0 "), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(checkpoint()));
}

// --print-config shows what a run would train with, every key resolved,
// and trains nothing: configs/default.json is the recipe plus its data.
TEST_F(Cli, PrintConfigShowsTheResolvedConfigAndTrainsNothing) {
  const Result r = run({"train", "--config", std::string(CHARRNN_SOURCE_DIR) + "/configs/default.json", "--set",
                        "train.steps=7", "--set", "train.checkpoint=" + checkpoint(), "--print-config"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json config = nlohmann::json::parse(r.out);
  EXPECT_EQ(config["model"]["cell"], "gru");
  EXPECT_EQ(config["model"]["hidden_size"], 256);
  EXPECT_EQ(config["train"]["batching"], "sequential");
  EXPECT_EQ(config["train"]["lr_schedule"], "linear");
  EXPECT_EQ(config["train"]["min_lr"], 0);
  EXPECT_EQ(config["model"]["dropout"], 0.1);
  EXPECT_EQ(config["train"]["learning_rate"], 0.008);
  EXPECT_EQ(config["train"]["weight_decay"], 0.3);
  EXPECT_EQ(config["train"]["max_seconds"], 300);
  EXPECT_EQ(config["train"]["steps"], 7);
  EXPECT_EQ(config["sample"]["prime"], "The whale ");
  EXPECT_FALSE(fs::exists(checkpoint()));
}

TEST_F(Cli, MisspeltKeysGetTheNearestKnownKey) {
  expect_clean_error(run(train_args({"--set", "train.max_secnds=10"})), 2,
                     "unknown key \"train.max_secnds\"; did you mean \"train.max_seconds\"?");
  expect_clean_error(run(train_args({"--set", "train.hidden_size=64"})), 2, "did you mean \"model.hidden_size\"?");
  write_all(dir_ / "typo.json", R"({"model": {"hiden_size": 64}})");
  expect_clean_error(run({"train", "--config", (dir_ / "typo.json").string()}), 2,
                     "typo.json: unknown key \"model.hiden_size\"; did you mean \"model.hidden_size\"?");
  const Result far = run(train_args({"--set", "train.colour=red"}));
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
}

TEST_F(Cli, SamplesUseAPrimeTheCorpusHas) {
  // the config's prime has a character this text lacks ('T')
  const Result r = run(train_args({"--set", "train.steps=2", "--set", "sample.prime=The whale "}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string first_words = make_corpus(20000).substr(0, 12);
  EXPECT_NE(r.err.find("samples: prime \"" + first_words), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("has characters this text lacks"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("(no sample"), std::string::npos) << r.err;
  const nlohmann::json info = nlohmann::json::parse(run({"info", "--checkpoint", checkpoint(), "--json"}).out);
  EXPECT_EQ(info["config"]["sample"]["prime"].get<std::string>().rfind(first_words, 0), 0u);

  // a config's prime, written for its own text, is not used on another one
  write_all(dir_ / "own.json", R"({"data": {"path": "elsewhere.txt"}, "sample": {"prime": "sea "},
                                   "model": {"hidden_size": 16, "num_layers": 1}, "train": {"steps": 2}})");
  const Result other = run({"train", "--config", (dir_ / "own.json").string(), "--set", "data.path=" + corpus_,
                            "--set", "train.checkpoint=" + checkpoint()});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_NE(other.err.find("samples: prime \"" + first_words), std::string::npos) << other.err;
  EXPECT_NE(other.err.find("--set data.path chose another text"), std::string::npos) << other.err;
  // its own prime, on its own text, stays
  const Result own = run(train_args({"--set", "train.steps=2", "--set", "sample.prime=sea "}));
  EXPECT_NE(own.err.find("samples: prime \"sea \" (sample.prime)"), std::string::npos) << own.err;
}

TEST_F(Cli, SeveralSamplesAreToldApart) {
  train_ok({"--set", "train.steps=2"});
  const std::vector<std::string> base = {"generate", "--checkpoint", checkpoint(), "--num-samples", "3", "--length",
                                         "150",      "--seed",       "5",          "--prime",       "the"};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const Result json = with({"--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  std::istringstream lines(json.out);
  std::vector<nlohmann::json> samples;
  for (std::string line; std::getline(lines, line);) samples.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(samples.size(), 3u) << json.out;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(samples[k]["sample"], k + 1);
    EXPECT_EQ(samples[k]["seed"], 5);
    EXPECT_EQ(samples[k]["text"].get<std::string>().rfind("the", 0), 0u);
  }
  // not on a terminal: the separator between samples, a blank line by default
  const auto joined = [&](const std::string& separator) {
    std::string expected;
    for (size_t k = 0; k < 3; ++k) {
      const std::string text = samples[k]["text"];
      expected += (k ? separator : "") + text + (text.back() == '\n' ? "" : "\n");
    }
    return expected;
  };
  ASSERT_NE(joined("").find('\n'), joined("").size() - 1) << "the samples should span several lines";
  EXPECT_EQ(with({"--separator", "\\n=====\\n"}).out, joined("\n=====\n"));
  EXPECT_EQ(with({}).out, joined("\n"));
  // on a terminal: a header per sample
  const std::string command = "script -qec " +
                              quote(quote(CHARRNN_BIN) + " generate --checkpoint " + quote(checkpoint()) +
                                    " --num-samples 3 --length 150 --seed 5 --prime the") +
                              " /dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string tty;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) tty.append(buffer, n);
  ::pclose(pipe);
  EXPECT_NE(tty.find("--- sample 1 of 3 (seed 5) ---"), std::string::npos) << tty;
  EXPECT_NE(tty.find("--- sample 3 of 3 (seed 5) ---"), std::string::npos) << tty;
}

TEST_F(Cli, FineTuningSaysItsRateAndWarnsWhenValidationLossRises) {
  // trained on "ab" pairs, scored on a text of "a" runs: the better the
  // model learns the training text, the worse it predicts the held-out one
  std::string text;
  while (text.size() < 9000) text += "ab";
  while (text.size() < 10000) text += "a";
  write_all(corpus_, text);
  const Result r = run(train_args({"--set", "train.steps=60", "--set", "train.eval_every=5", "--set",
                                   "train.learning_rate=0.02", "--set", "data.val_fraction=0.1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: the validation loss has risen 3 evaluations in a row"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(".best.pt"), std::string::npos) << r.err;

  write_all(dir_ / "more.txt", make_corpus(20000, 5));
  const Result tuned = run({"train", "--init-from", checkpoint(), "--set", "data.path=" + (dir_ / "more.txt").string(),
                            "--set", "train.checkpoint=" + (dir_ / "tuned.pt").string(), "--set", "train.steps=2"});
  ASSERT_EQ(tuned.exit_code, 0) << tuned.err;
  // no rate named: a sixteenth of the base config's
  EXPECT_NE(tuned.err.find("fine-tuning with the base's config's recipe and length at 1/16 of its rate "
                           "(--set train.learning_rate=R chooses one): random batching, constant lr 0.00125; 2 steps"),
            std::string::npos)
      << tuned.err;
  const Result named = run({"train", "--init-from", checkpoint(), "--set", "data.path=" + (dir_ / "more.txt").string(),
                            "--set", "train.checkpoint=" + (dir_ / "tuned.pt").string(), "--set", "train.steps=2",
                            "--set", "train.learning_rate=0.004"});
  ASSERT_EQ(named.exit_code, 0) << named.err;
  EXPECT_NE(named.err.find("fine-tuning with the base's config's recipe and length: random batching, constant lr 0.004;"),
            std::string::npos)
      << named.err;
}

TEST_F(Cli, UnknownCommandsListEveryCommand) {
  const Result r = run({"serv"});
  expect_clean_error(r, 2, "unknown command \"serv\" (did you mean \"serve\"?)");
  for (const char* command : {"train", "generate", "chat", "eval", "serve", "info", "export", "plot", "bench", "launch"})
    EXPECT_NE(r.err.find(command), std::string::npos) << command;
  const Result help = run({"--help"});
  EXPECT_NE(help.out.find("  serve     --checkpoint"), std::string::npos) << help.out;
}

TEST_F(Cli, EncodedCorporaGoToTheCacheFolderAndTheFirstRunSaysSo) {
  const Result first = run(train_args({"--set", "train.steps=2"}));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const fs::path folder = dir_ / "cache" / "charrnn";
  EXPECT_NE(first.err.find("encoded the corpus once into " + folder.string() + "/corpus.txt-"), std::string::npos)
      << first.err;
  EXPECT_NE(first.err.find(" MB)"), std::string::npos) << first.err;
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(folder)) files += entry.path().extension() == ".ids";
  EXPECT_EQ(files, 1u);
  for (const auto& entry : fs::directory_iterator(dir_)) EXPECT_NE(entry.path().extension(), ".ids") << entry.path();
  const Result second = run(train_args({"--set", "train.steps=2"}));
  EXPECT_EQ(second.err.find("encoded the corpus"), std::string::npos) << second.err;
}

}  // namespace
