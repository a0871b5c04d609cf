// checkpoint: a save/load round trip keeps everything, and every kind of
// damaged file is a charrnn::Error with a clear message, never a crash.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/sampler.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::Checkpoint;
using charrnn::CharRNN;
using charrnn_test::thrown_message;
using charrnn_test::write_file;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    checkpoint_.config.model.cell = charrnn::CellType::GRU;
    checkpoint_.config.model.embedding_dim = 6;
    checkpoint_.config.model.hidden_size = 12;
    checkpoint_.config.model.num_layers = 2;
    checkpoint_.config.train.steps = 321;
    checkpoint_.config.sample.prime = "caf\xC3\xA9";
    checkpoint_.vocab = charrnn::Vocab::from_text(charrnn::decode_utf8("hello w\xC3\xB6rld \xF0\x9F\x98\x80!"));
    checkpoint_.progress.step = 123;
    checkpoint_.progress.chars_trained = 4567;
    checkpoint_.progress.elapsed_seconds = 8.5;
    checkpoint_.progress.last_train_loss = 1.25;
    // best_val_loss stays NaN and best_step -1: not validated yet
    checkpoint_.charrnn_version = CHARRNN_VERSION;
    charrnn::ModelOrigin origin;  // fine-tuned from a base, itself fine-tuned
    origin.checkpoint = "models/base \xC3\xA9.pt";
    origin.step = 2000;
    origin.chars_trained = 1024000;
    origin.best_val_loss = 1.375;
    origin.data = "data/sotu.txt";
    origin.added_chars = "\xC3\xB6\xF0\x9F\x98\x80";
    checkpoint_.lineage = {origin, charrnn::ModelOrigin{}};

    model_ = CharRNN(checkpoint_.vocab.size(), checkpoint_.config.model);
    checkpoint_.model_bytes = charrnn::archive_module(*model_);
    // one optimizer step so Adam has state to save
    torch::optim::Adam adam(model_->parameters(), torch::optim::AdamOptions(0.01));
    auto [logits, state] = model_->forward(torch::zeros({1, 3}, torch::kLong));
    logits.sum().backward();
    adam.step();
    checkpoint_.model_bytes = charrnn::archive_module(*model_);
    checkpoint_.optimizer_bytes = charrnn::archive_optimizer(adam);
    checkpoint_.rng_bytes = charrnn::archive_tensors({{"batcher", charrnn::make_generator(7).get_state()}});

    path_ = dir_.file("model.pt");
    charrnn::save_checkpoint(path_, checkpoint_);
    bytes_ = charrnn_test::read_file_bytes(path_);
    ASSERT_GT(bytes_.size(), 100u);
  }

  // The header JSON of bytes_, and bytes_ with another header text and a
  // correct checksum: content errors behind a valid frame.
  nlohmann::json header() const { return nlohmann::json::parse(bytes_.substr(20, header_size())); }
  std::string with_header_text(const std::string& text) const {
    std::string out = bytes_.substr(0, 12);
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xFF));
    out += text;
    const uint32_t crc = charrnn::crc32(text.data(), text.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
    return out + bytes_.substr(20 + header_size() + 4);
  }
  uint64_t header_size() const {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes_[12 + i])) << (8 * i);
    return v;
  }

  // writes `bytes` to a new file and expects loading it to throw charrnn::Error
  std::string load_error(const std::string& name, const std::string& bytes) {
    const std::string path = dir_.file(name);
    write_file(path, bytes);
    const std::string message = thrown_message<charrnn::Error>([&] { charrnn::load_checkpoint(path); });
    EXPECT_CONTAINS(message, path);
    return message;
  }

  charrnn_test::TempDir dir_;
  Checkpoint checkpoint_;
  CharRNN model_{nullptr};
  std::string path_;
  std::string bytes_;
};

TEST_F(CheckpointTest, RoundTripKeepsEverything) {
  const Checkpoint loaded = charrnn::load_checkpoint(path_);
  EXPECT_EQ(charrnn::to_json(loaded.config), charrnn::to_json(checkpoint_.config));
  EXPECT_EQ(loaded.config.sample.prime, "caf\xC3\xA9");
  EXPECT_EQ(loaded.vocab.chars(), checkpoint_.vocab.chars());
  EXPECT_EQ(loaded.vocab.counts(), checkpoint_.vocab.counts());
  EXPECT_EQ(loaded.progress.step, 123);
  EXPECT_EQ(loaded.progress.chars_trained, 4567);
  EXPECT_EQ(loaded.progress.elapsed_seconds, 8.5);
  EXPECT_TRUE(std::isnan(loaded.progress.best_val_loss));
  EXPECT_EQ(loaded.progress.best_step, -1);
  EXPECT_EQ(loaded.progress.last_train_loss, 1.25);
  EXPECT_EQ(loaded.charrnn_version, CHARRNN_VERSION);
  EXPECT_EQ(loaded.model_bytes, checkpoint_.model_bytes);
  EXPECT_EQ(loaded.optimizer_bytes, checkpoint_.optimizer_bytes);
  EXPECT_EQ(loaded.rng_bytes, checkpoint_.rng_bytes);
  ASSERT_EQ(loaded.lineage.size(), 2u);
  EXPECT_EQ(loaded.lineage[0].checkpoint, "models/base \xC3\xA9.pt");
  EXPECT_EQ(loaded.lineage[0].step, 2000);
  EXPECT_EQ(loaded.lineage[0].chars_trained, 1024000);
  EXPECT_EQ(loaded.lineage[0].best_val_loss, 1.375);
  EXPECT_EQ(loaded.lineage[0].data, "data/sotu.txt");
  EXPECT_EQ(loaded.lineage[0].added_chars, "\xC3\xB6\xF0\x9F\x98\x80");
  EXPECT_TRUE(std::isnan(loaded.lineage[1].best_val_loss));
  EXPECT_EQ(charrnn::serialize_checkpoint(loaded), bytes_);  // nothing lost, nothing added
}

TEST_F(CheckpointTest, FiniteBestLossRoundTripsExactly) {
  checkpoint_.progress.best_val_loss = 1.0 / 3.0;
  checkpoint_.progress.best_step = 100;
  checkpoint_.progress.last_train_loss = std::numeric_limits<double>::quiet_NaN();
  charrnn::save_checkpoint(path_, checkpoint_);
  const Checkpoint loaded = charrnn::load_checkpoint(path_);
  EXPECT_EQ(loaded.progress.best_val_loss, 1.0 / 3.0);
  EXPECT_EQ(loaded.progress.best_step, 100);
  EXPECT_TRUE(std::isnan(loaded.progress.last_train_loss));
}

TEST_F(CheckpointTest, RestoredModelGivesIdenticalLogits) {
  const Checkpoint loaded = charrnn::load_checkpoint(path_);
  CharRNN restored = charrnn::restore_model(loaded, torch::kCPU);
  EXPECT_EQ(restored->options().cell, charrnn::CellType::GRU);
  EXPECT_EQ(restored->vocab_size(), checkpoint_.vocab.size());
  torch::NoGradGuard no_grad;
  model_->eval();
  restored->eval();
  const torch::Tensor ids = torch::randint(0, checkpoint_.vocab.size(), {3, 9}, torch::kLong);
  auto [a, sa] = model_->forward(ids);
  auto [b, sb] = restored->forward(ids);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(sa.h, sb.h));
  const auto pa = model_->named_parameters();
  const auto pb = restored->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

TEST_F(CheckpointTest, RestoredOptimizerAndRngState) {
  const Checkpoint loaded = charrnn::load_checkpoint(path_);
  CharRNN restored = charrnn::restore_model(loaded, torch::kCPU);
  torch::optim::Adam adam(restored->parameters(), torch::optim::AdamOptions(0.01));
  EXPECT_NO_THROW(charrnn::restore_optimizer(adam, loaded.optimizer_bytes, torch::kCPU));
  charrnn_test::expect_same_adam_state(charrnn::archive_optimizer(adam), checkpoint_.optimizer_bytes,
                                       checkpoint_.vocab.size(), checkpoint_.config.model);
  const torch::Tensor state = charrnn::read_archived_tensor(loaded.rng_bytes, "batcher");
  ASSERT_TRUE(state.defined());
  EXPECT_TRUE(torch::equal(state, charrnn::make_generator(7).get_state()));
  EXPECT_FALSE(charrnn::read_archived_tensor(loaded.rng_bytes, "absent").defined());
  EXPECT_THROW(charrnn::restore_optimizer(adam, "not an archive", torch::kCPU), charrnn::Error);
  EXPECT_THROW(charrnn::read_archived_tensor("not an archive", "batcher"), charrnn::Error);
}

// The raw training weights beside an average's (train.ema_decay): a
// section of their own, written only when there is one, so that a
// checkpoint without it (any older one) is laid out and read as before.
TEST_F(CheckpointTest, TrainingModelSectionIsOptionalAndRoundTrips) {
  std::vector<std::string> names;
  const nlohmann::json table = header().at("sections");  // a copy: header() returns a temporary
  for (const auto& section : table) names.push_back(section.at("name").get<std::string>());
  EXPECT_EQ(names, (std::vector<std::string>{"model", "optimizer", "rng"}));
  const Checkpoint plain = charrnn::load_checkpoint(path_);
  EXPECT_TRUE(plain.training_model_bytes.empty());
  // without the section, training continues from the served weights
  const auto served = charrnn::restore_model(plain, torch::kCPU)->named_parameters();
  for (const auto& p : charrnn::restore_training_model(plain, torch::kCPU)->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), served[p.key()])) << p.key();

  torch::manual_seed(5);
  CharRNN raw(checkpoint_.vocab.size(), checkpoint_.config.model);
  Checkpoint averaged = checkpoint_;
  averaged.training_model_bytes = charrnn::archive_module(*raw);
  const std::string path = dir_.file("averaged.pt");
  charrnn::save_checkpoint(path, averaged);
  const std::string bytes = charrnn_test::read_file_bytes(path);
  const Checkpoint loaded = charrnn::load_checkpoint(path);
  EXPECT_EQ(loaded.training_model_bytes, averaged.training_model_bytes);
  EXPECT_EQ(loaded.model_bytes, checkpoint_.model_bytes);
  EXPECT_EQ(charrnn::serialize_checkpoint(loaded), bytes);
  const auto want_raw = raw->named_parameters();
  for (const auto& p : charrnn::restore_training_model(loaded, torch::kCPU)->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), want_raw[p.key()])) << p.key();
  const auto want_served = model_->named_parameters();
  for (const auto& p : charrnn::restore_model(loaded, torch::kCPU)->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), want_served[p.key()])) << p.key();

  // it is checked like every section, and named when it is damaged
  std::string flipped = bytes;
  flipped.back() = static_cast<char>(flipped.back() ^ 0x40);  // the last section's last byte
  EXPECT_CONTAINS(load_error("flipped_training_model.pt", flipped), "training_model");
  Checkpoint short_archive = checkpoint_;
  short_archive.training_model_bytes = "too short";
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { charrnn::restore_training_model(short_archive, torch::kCPU); }),
                  "training_model");
}

TEST_F(CheckpointTest, WeightsOfTheWrongShapeAreAnError) {
  Checkpoint wrong = charrnn::load_checkpoint(path_);
  wrong.config.model.hidden_size = 13;
  const std::string message = thrown_message<charrnn::Error>([&] { charrnn::restore_model(wrong, torch::kCPU); });
  EXPECT_FALSE(message.empty());
}

TEST_F(CheckpointTest, SaveIsAtomicAndCreatesFolders) {
  const std::string nested = dir_.file("a/b/c/model.pt");
  charrnn::save_checkpoint(nested, checkpoint_);
  EXPECT_EQ(charrnn_test::read_file_bytes(nested), bytes_);
  // overwriting leaves exactly the one file, no temporaries
  charrnn::save_checkpoint(nested, checkpoint_);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.file("a/b/c"))) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "model.pt");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointTest, MissingFile) {
  const std::string missing = dir_.file("missing.pt");
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { charrnn::load_checkpoint(missing); }), missing);
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { charrnn::load_checkpoint(dir_.path().string()); }),
                  "directory");
}

TEST_F(CheckpointTest, EmptyFile) { EXPECT_CONTAINS(load_error("empty.pt", ""), "empty"); }

TEST_F(CheckpointTest, TextFile) {
  EXPECT_CONTAINS(load_error("text.pt", "{\"this\": \"is not a checkpoint\"}\n"), "not a charrnn checkpoint");
  EXPECT_CONTAINS(load_error("short.pt", "CHA"), "not a charrnn checkpoint");
}

TEST_F(CheckpointTest, TruncatedFile) {
  for (size_t cut : {size_t{4}, size_t{8}, size_t{12}, size_t{20}, bytes_.size() / 2, bytes_.size() - 1}) {
    SCOPED_TRACE(cut);
    load_error("truncated.pt", bytes_.substr(0, cut));
  }
  // and every cut through the header and into the first section
  for (size_t cut = 1; cut < std::min<size_t>(bytes_.size(), 3000); cut += 37) {
    SCOPED_TRACE(cut);
    load_error("truncated.pt", bytes_.substr(0, cut));
  }
  EXPECT_CONTAINS(load_error("truncated.pt", bytes_.substr(0, bytes_.size() - 1)), "corrupt or truncated");
}

TEST_F(CheckpointTest, FlippedByte) {
  std::string middle = bytes_;
  middle[middle.size() / 2] ^= 0x20;
  EXPECT_CONTAINS(load_error("flipped.pt", middle), "checksum mismatch");
  std::string last = bytes_;
  last.back() ^= 0x01;
  EXPECT_CONTAINS(load_error("flipped_last.pt", last), "checksum mismatch");
  std::string header = bytes_;
  header[8 + 4 + 8 + 5] ^= 0x01;  // inside the header JSON
  EXPECT_CONTAINS(load_error("flipped_header.pt", header), "header checksum mismatch");
  std::string length = bytes_;
  length[8 + 4 + 7] = '\x7F';  // header length's top byte: absurdly long
  EXPECT_CONTAINS(load_error("flipped_length.pt", length), "header length");
}

TEST_F(CheckpointTest, TrailingBytes) {
  EXPECT_CONTAINS(load_error("trailing.pt", bytes_ + "xyz"), "trailing");
}

TEST_F(CheckpointTest, FutureFormatVersionSaysNewer) {
  std::string future = bytes_;
  const uint32_t version = 99;
  for (int i = 0; i < 4; ++i) future[8 + i] = static_cast<char>((version >> (8 * i)) & 0xFF);
  const std::string message = load_error("future.pt", future);
  EXPECT_CONTAINS(message, "newer");
  EXPECT_CONTAINS(message, "99");

  std::string zero = bytes_;
  for (int i = 0; i < 4; ++i) zero[8 + i] = 0;
  load_error("zero.pt", zero);
}

TEST_F(CheckpointTest, FormatVersionIsStoredAfterTheMagic) {
  ASSERT_EQ(bytes_.substr(0, 8), std::string("CHARRNN\n"));
  uint32_t version = 0;
  for (int i = 0; i < 4; ++i) version |= static_cast<uint32_t>(static_cast<unsigned char>(bytes_[8 + i])) << (8 * i);
  EXPECT_EQ(version, charrnn::kCheckpointFormatVersion);
}

TEST_F(CheckpointTest, ValidChecksumButBadContentIsStillAnError) {
  // rewrite the header with an invalid config and a correct checksum
  const nlohmann::json header = this->header();
  const auto rebuild = [&](const nlohmann::json& h) { return with_header_text(h.dump()); };
  ASSERT_NO_THROW({
    write_file(dir_.file("rebuilt.pt"), rebuild(header));
    charrnn::load_checkpoint(dir_.file("rebuilt.pt"));
  }) << "the rebuild itself must be faithful";

  nlohmann::json bad_config = header;
  bad_config["config"]["model"]["hidden_size"] = 0;
  EXPECT_CONTAINS(load_error("bad_config.pt", rebuild(bad_config)), "model.hidden_size");

  nlohmann::json unknown_key = header;
  unknown_key["config"]["model"]["hiden_size"] = 3;
  EXPECT_CONTAINS(load_error("unknown_key.pt", rebuild(unknown_key)), "model.hiden_size");

  nlohmann::json no_vocab = header;
  no_vocab.erase("vocab");
  load_error("no_vocab.pt", rebuild(no_vocab));

  nlohmann::json bad_vocab = header;
  bad_vocab["vocab"]["code_points"] = {98, 97};
  load_error("bad_vocab.pt", rebuild(bad_vocab));

  nlohmann::json huge_section = header;
  huge_section["sections"][0]["size"] = 1ull << 40;
  EXPECT_CONTAINS(load_error("huge_section.pt", rebuild(huge_section)), "past the end");

  load_error("not_json.pt", rebuild(nlohmann::json::array()));

  // Numbers nlohmann's get<integer>() would convert with undefined behaviour
  // (a double out of range) or wrap: the root cause of the fuzzer's
  // "counts": [1e300] (test_fuzz_regressions.cpp), in every integer field.
  using nlohmann::json;
  struct Case {
    const char* pointer;
    json value;
    const char* named;  // what the message must name
  };
  const Case out_of_range[] = {
      {"/progress/step", 1e300, "progress.step"},
      {"/progress/chars_trained", -1e300, "progress.chars_trained"},
      {"/progress/best_step", -1.5, "progress.best_step"},
      {"/sections/0/size", -1.5, "\"model\" size"},
      {"/sections/0/size", -1, "\"model\" size"},
      {"/sections/0/crc32", 1e300, "\"model\" crc32"},
      {"/sections/0/crc32", 4294967296u, "\"model\" crc32"},
      {"/vocab/code_points/0", 0x110000, "\"code_points\""},
      {"/vocab/code_points/0", 32.5, "\"code_points\""},
      {"/vocab/counts/0", -1, "\"counts\""},
  };
  for (const Case& c : out_of_range) {
    SCOPED_TRACE(std::string(c.pointer) + " = " + c.value.dump());
    json bad = header;
    bad[json::json_pointer(c.pointer)] = c.value;
    EXPECT_CONTAINS(load_error("out_of_range.pt", rebuild(bad)), c.named);
  }
}

TEST_F(CheckpointTest, LineageIsCheckedLikeTheRestOfTheHeader) {
  // the same rebuild as above, on the lineage (init_from) a fine-tune writes
  const nlohmann::json header = this->header();
  using nlohmann::json;
  const auto with_lineage = [&](const json& lineage) {
    json h = header;
    h["init_from"] = lineage;
    return with_header_text(h.dump());
  };
  EXPECT_CONTAINS(load_error("object.pt", with_lineage(json::object())), "init_from is not a list");
  EXPECT_CONTAINS(load_error("number.pt", with_lineage(json::array({5}))), "init_from");
  json entry = header["init_from"][0];
  entry["step"] = 1e300;
  EXPECT_CONTAINS(load_error("step.pt", with_lineage(json::array({entry}))), "init_from.step");
  entry = header["init_from"][0];
  entry.erase("data");
  load_error("no_data.pt", with_lineage(json::array({entry})));
  entry = header["init_from"][0];
  entry["added_chars"] = 7;
  EXPECT_CONTAINS(load_error("chars.pt", with_lineage(json::array({entry}))), "init_from.added_chars");
  // bytes that are not UTF-8 inside a JSON string: written by hand, as no JSON library would
  entry = header["init_from"][0];
  entry["data"] = "NOT-UTF8";
  json h = header;
  h["init_from"] = json::array({entry});
  std::string text = h.dump();
  text.replace(text.find("NOT-UTF8"), 8, "\xFF\xFE");
  load_error("latin1.pt", with_header_text(text));  // the JSON parser refuses it
}

TEST(Crc32, KnownValues) {
  const char* check = "123456789";
  EXPECT_EQ(charrnn::crc32(check, std::strlen(check)), 0xCBF43926u);
  EXPECT_EQ(charrnn::crc32("", 0), 0u);
  EXPECT_EQ(charrnn::crc32("a", 1), 0xE8B7BE43u);
}

// The "rng" section keeps every rank's streams: rank 0's under the plain
// names (what a run of one process writes), the others' suffixed.
TEST(RankStreams, EveryRanksStreamsComeBackAndRankZerosUnderThePlainNames) {
  const auto generator_state = [](uint64_t seed) { return charrnn::make_generator(seed).get_state(); };
  std::vector<charrnn::RankStreams> ranks(2);
  ranks[0] = {generator_state(1), generator_state(2), charrnn::State{torch::randn({2, 3, 4}), torch::randn({2, 3, 4})}};
  ranks[1] = {generator_state(3), generator_state(4), charrnn::State()};  // before its first batch
  const torch::Tensor position = torch::tensor({5, 6}, torch::kLong);
  const std::string rng = charrnn::archive_training_streams(ranks, position);

  EXPECT_TRUE(torch::equal(charrnn::read_archived_tensor(rng, "batcher"), ranks[0].batcher));
  EXPECT_TRUE(torch::equal(charrnn::read_archived_tensor(rng, "torch_cpu_rank1"), ranks[1].torch_cpu));
  EXPECT_TRUE(torch::equal(charrnn::read_batcher_position(rng), position));
  for (int64_t r = 0; r < 2; ++r) {
    const charrnn::RankStreams back = charrnn::read_rank_streams(rng, r);
    const charrnn::RankStreams& sent = ranks[static_cast<size_t>(r)];
    EXPECT_TRUE(torch::equal(back.batcher, sent.batcher)) << r;
    EXPECT_TRUE(torch::equal(back.torch_cpu, sent.torch_cpu)) << r;
    ASSERT_EQ(back.carried.defined(), sent.carried.defined()) << r;
    if (sent.carried.defined()) {
      EXPECT_TRUE(torch::equal(back.carried.h, sent.carried.h));
      EXPECT_TRUE(torch::equal(back.carried.c, sent.carried.c));
    }
  }
  // a rank the run did not have, and a checkpoint that kept no streams
  const charrnn::RankStreams absent = charrnn::read_rank_streams(rng, 2);
  EXPECT_FALSE(absent.batcher.defined() || absent.torch_cpu.defined() || absent.carried.defined());
  EXPECT_FALSE(charrnn::read_rank_streams("", 0).batcher.defined());
  EXPECT_FALSE(charrnn::read_batcher_position("").defined());
}

TEST(RankStreams, SurviveTheBytesRanksSendEachOther) {
  const charrnn::RankStreams sent{charrnn::make_generator(7).get_state(), charrnn::make_generator(8).get_state(),
                                  charrnn::State{torch::randn({1, 2, 3}), torch::Tensor()}};
  const charrnn::RankStreams back = charrnn::parse_rank_streams(charrnn::serialize_rank_streams(sent));
  EXPECT_TRUE(torch::equal(back.batcher, sent.batcher));
  EXPECT_TRUE(torch::equal(back.torch_cpu, sent.torch_cpu));
  EXPECT_TRUE(torch::equal(back.carried.h, sent.carried.h));
  EXPECT_FALSE(back.carried.c.defined());
}

}  // namespace
