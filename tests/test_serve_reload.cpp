// serve_reload: the served model and --watch's hot reload, without a
// socket. A replaced file swaps new requests to the new model while a
// request already running finishes on the old one; a file that does not
// load leaves the old model serving and says why.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "charrnn/serve_reload.h"
#include "charrnn/trainer.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::ReloadResult;

// Two models of the same text and vocabulary with other weights (the
// initialisation of two seeds) and other step counts.
struct Models {
  charrnn_test::TempDir dir;
  charrnn::Checkpoint a, b;
  Models() {
    charrnn::Config config = charrnn_test::small_config(dir, "reload", charrnn::CellType::LSTM, 1, 0.0, 4, 4);
    charrnn::Trainer first(config);
    first.run();
    a = first.make_checkpoint();
    config.train.seed = 7;
    config.train.steps = 8;
    charrnn::Trainer second(config);
    second.run();
    b = second.make_checkpoint();
  }
};

const Models& models() {
  static const Models* m = new Models();
  return *m;
}

charrnn::StreamRequest request(int64_t length, uint64_t seed) {
  return {charrnn::decode_utf8("hello "), length, charrnn::SamplingParams{1.0, 0, 1.0}, seed, {}};
}

std::string read_all(charrnn::ServeStream& s) {
  std::string text;
  while (s.read(text, std::chrono::milliseconds(50))) {
  }
  return text;
}

// The text an engine of its own gives for the request.
std::string text_of(const charrnn::Checkpoint& c, const charrnn::StreamRequest& r) {
  charrnn::ServeEngine engine(c, {2, 4, 1});
  auto streams = engine.submit({r});
  EXPECT_EQ(streams.size(), 1u);
  return read_all(*streams.at(0));
}

std::string text_of(charrnn::ServedModel& served, const charrnn::StreamRequest& r) {
  charrnn::SubmittedRequest submitted = served.submit(served.engine(), {r});
  EXPECT_EQ(submitted.streams.size(), 1u);
  return read_all(*submitted.streams.at(0));
}

TEST(ServeReload, AReplacedFileSwapsToTheNewModelWhileRunningRequestsFinishOnTheOld) {
  const Models& m = models();
  const std::string path = m.dir.file("served.pt");
  charrnn::save_checkpoint(path, m.a);
  charrnn::ServedModel served(path, {4, 16, 1});
  const charrnn::StreamRequest probe = request(60, 5), running = request(3000, 9);
  const std::string a_text = text_of(m.a, probe), b_text = text_of(m.b, probe);
  ASSERT_NE(a_text, b_text) << "the two models must tell themselves apart";
  EXPECT_EQ(text_of(served, probe), a_text);

  // a long request starts on the first model
  const std::shared_ptr<charrnn::ServeEngine> old = served.engine();
  charrnn::SubmittedRequest long_one = served.submit(old, {running});
  ASSERT_EQ(long_one.streams.size(), 1u);
  EXPECT_EQ(long_one.engine, old);
  EXPECT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kUnchanged);

  charrnn::save_checkpoint(path, m.b);  // renamed into place, as training writes it
  const ReloadResult reload = served.reload_if_replaced();
  EXPECT_EQ(reload.outcome, ReloadResult::Outcome::kReloaded) << reload.error;
  EXPECT_EQ(reload.step, m.b.progress.step);
  EXPECT_NE(served.engine(), old);
  EXPECT_EQ(served.engine()->checkpoint().progress.step, m.b.progress.step);
  EXPECT_EQ(text_of(served, probe), b_text);
  EXPECT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kUnchanged);

  // the request that was running ends as the first model alone writes it
  EXPECT_EQ(read_all(*long_one.streams[0]), text_of(m.a, running));
  EXPECT_EQ(long_one.streams[0]->finish_reason(), "length");
}

TEST(ServeReload, ARequestCheckedAgainstARetiredEngineGoesToTheCurrentOne) {
  const Models& m = models();
  const std::string path = m.dir.file("retired.pt");
  charrnn::save_checkpoint(path, m.a);
  charrnn::ServedModel served(path, {4, 16, 1});
  const std::shared_ptr<charrnn::ServeEngine> taken = served.engine();  // the request was parsed with it
  charrnn::save_checkpoint(path, m.b);
  ASSERT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kReloaded);
  charrnn::SubmittedRequest submitted = served.submit(taken, {request(40, 3)});
  ASSERT_EQ(submitted.streams.size(), 1u);
  EXPECT_EQ(submitted.engine, served.engine());
  EXPECT_EQ(read_all(*submitted.streams[0]), text_of(m.b, request(40, 3)));
}

TEST(ServeReload, AFileThatDoesNotLoadKeepsTheOldModelAndSaysWhy) {
  const Models& m = models();
  const std::string path = m.dir.file("broken.pt");
  charrnn::save_checkpoint(path, m.a);
  charrnn::ServedModel served(path, {4, 16, 1});
  const std::shared_ptr<charrnn::ServeEngine> first = served.engine();
  const std::string a_text = text_of(m.a, request(50, 2));

  charrnn_test::write_file(path, "not a checkpoint");
  const ReloadResult bad = served.reload_if_replaced();
  EXPECT_EQ(bad.outcome, ReloadResult::Outcome::kFailed);
  EXPECT_FALSE(bad.error.empty());
  EXPECT_EQ(served.engine(), first);
  EXPECT_EQ(text_of(served, request(50, 2)), a_text);
  // it is not tried again until it changes again
  EXPECT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kUnchanged);
  // a missing file is no change either: training renames the next one in
  std::filesystem::remove(path);
  EXPECT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kUnchanged);
  EXPECT_EQ(text_of(served, request(50, 2)), a_text);

  charrnn::save_checkpoint(path, m.b);
  EXPECT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kReloaded);
  EXPECT_EQ(text_of(served, request(50, 2)), text_of(m.b, request(50, 2)));
}

TEST(ServeReload, DrainEndsTheStreamsOfEveryEngineByTheDeadline) {
  const Models& m = models();
  const std::string path = m.dir.file("drain.pt");
  charrnn::save_checkpoint(path, m.a);
  charrnn::ServedModel served(path, {4, 16, 1});
  const int64_t huge = 100000000;  // would run for minutes
  charrnn::SubmittedRequest on_old = served.submit(served.engine(), {request(huge, 1)});
  charrnn::save_checkpoint(path, m.b);
  ASSERT_EQ(served.reload_if_replaced().outcome, ReloadResult::Outcome::kReloaded);
  charrnn::SubmittedRequest on_new = served.submit(served.engine(), {request(huge, 2)});
  ASSERT_EQ(on_old.streams.size(), 1u);
  ASSERT_EQ(on_new.streams.size(), 1u);
  served.drain(std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
  for (auto* s : {on_old.streams[0].get(), on_new.streams[0].get()}) {
    EXPECT_TRUE(s->wait_ended(std::chrono::milliseconds(0)));
    EXPECT_EQ(s->finish_reason(), "length");
    EXPECT_LT(s->generated(), huge);
  }
  // a drained model takes no more streams
  EXPECT_TRUE(served.submit(served.engine(), {request(10, 1)}).streams.empty());
}

}  // namespace
