// surprisal_page: surprisals quantised to 1/256 bit and back, the most
// surprising spans and the per-line means on hand-made scores, and the
// page's data blocks as the viewer reads them.
#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/surprisal_page.h"
#include "test_helpers.h"

namespace {

using charrnn::kUnscored;
using charrnn::quantise_surprisal;
using charrnn::surprisal_bits;

TEST(SurprisalPage, QuantisationRoundTripsWithinHalfAStep) {
  EXPECT_EQ(quantise_surprisal(0.0), 0);
  EXPECT_EQ(quantise_surprisal(std::log(0.5)), 256);
  EXPECT_EQ(quantise_surprisal(std::log(0.125)), 3 * 256);
  EXPECT_EQ(quantise_surprisal(1e-12), 0) << "a rounding above probability 1 is 0 bits";
  EXPECT_EQ(quantise_surprisal(-1e6), kUnscored - 1) << "capped below the unscored mark";
  for (double p = 1.0; p > 1e-60; p *= 0.713) {
    const double bits = -std::log2(p);
    EXPECT_NEAR(surprisal_bits(quantise_surprisal(std::log(p))), bits, 0.5 / 256 + 1e-12) << p;
    // the probability the page shows is within 2^(1/512) - 1 (0.14%) of the true one
    const double shown = std::exp2(-surprisal_bits(quantise_surprisal(std::log(p))));
    EXPECT_LE(std::abs(shown / p - 1), std::exp2(1.0 / 512) - 1 + 1e-12) << p;
  }
}

// predicted character i at offset 2i (an unknown character between each)
std::vector<charrnn::SurprisingSpan> spans_of(const std::vector<uint16_t>& steps, int64_t length, int64_t count) {
  charrnn::SurprisingSpans spans(length, count);
  for (size_t i = 0; i < steps.size(); ++i) spans.add(2 * static_cast<int64_t>(i), U'a' + static_cast<char32_t>(i), steps[i]);
  return spans.finish();
}

TEST(SurprisalPage, SpansAreTheHighestLocalMaxima) {
  // window sums (length 3): 10 20 30 20 10 5 10 15 10 25 20; the peaks are
  // windows 2 (30) and 9 (25); window 7 (15) is beaten by window 9, which overlaps it
  const std::vector<uint16_t> steps{0, 0, 10, 10, 10, 0, 0, 5, 5, 5, 0, 20, 0};
  const auto spans = spans_of(steps, 3, 5);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].start, 4);
  EXPECT_EQ(spans[0].end, 9);
  EXPECT_EQ(spans[0].text, U"cde");
  EXPECT_DOUBLE_EQ(spans[0].mean_bits, 30.0 / 256 / 3);
  EXPECT_EQ(spans[1].start, 18);
  EXPECT_EQ(spans[1].end, 23);
  EXPECT_EQ(spans[1].text, U"jkl");
  EXPECT_DOUBLE_EQ(spans[1].mean_bits, 25.0 / 256 / 3);
  // only the best one when one is asked for; none for none
  const auto one = spans_of(steps, 3, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].text, U"cde");
  EXPECT_TRUE(spans_of(steps, 3, 0).empty());
}

TEST(SurprisalPage, SpansBreakTiesTowardsTheEarlierAndCoverShortTexts) {
  // equal windows: the first of overlapping equals wins, then the next that does not overlap it
  const auto ties = spans_of({5, 5, 5, 5, 5}, 2, 10);
  ASSERT_EQ(ties.size(), 1u) << "windows 1..3 each overlap an equal one before them";
  EXPECT_EQ(ties[0].text, U"ab");
  // equal sums that do not overlap: the earlier first
  const auto apart = spans_of({9, 0, 0, 9}, 1, 2);
  ASSERT_EQ(apart.size(), 2u);
  EXPECT_EQ(apart[0].text, U"a");
  EXPECT_EQ(apart[1].text, U"d");
  // fewer predicted characters than a span: one span of them all
  const auto short_text = spans_of({3, 7}, 20, 10);
  ASSERT_EQ(short_text.size(), 1u);
  EXPECT_EQ(short_text[0].text, U"ab");
  EXPECT_EQ(short_text[0].start, 0);
  EXPECT_EQ(short_text[0].end, 3);
  EXPECT_DOUBLE_EQ(short_text[0].mean_bits, 5.0 / 256);
  EXPECT_THROW(charrnn::SurprisingSpans(0, 3), charrnn::UsageError);
}

TEST(SurprisalPage, SpansStayExactOverALongText) {
  // one peak every 100 characters, growing: the last ones are the best
  std::vector<uint16_t> steps(10000, 1);
  for (size_t i = 50; i < steps.size(); i += 100) steps[i] = static_cast<uint16_t>(100 + i / 100);
  const auto spans = spans_of(steps, 20, 3);
  ASSERT_EQ(spans.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    const int64_t peak = 9950 - 100 * static_cast<int64_t>(k);
    // of the 20 windows holding the peak, the first one wins the tie
    EXPECT_EQ(spans[k].start, 2 * (peak - 19));
    EXPECT_DOUBLE_EQ(spans[k].mean_bits, (19.0 + 100 + static_cast<double>(peak / 100)) / 256 / 20);
  }
}

TEST(SurprisalPage, LineMeansAreOverTheScoredCharactersOfEachLine) {
  charrnn::LineMeans lines;
  EXPECT_FALSE(lines.add(U'a', kUnscored));
  EXPECT_FALSE(lines.add(U'b', 10));
  EXPECT_EQ(lines.add(U'\n', 21), uint16_t{16}) << "(10 + 21) / 2, rounded to the nearest";
  EXPECT_EQ(lines.add(U'\n', kUnscored), kUnscored) << "a line with nothing scored";
  EXPECT_FALSE(lines.add(U'c', 1));
  EXPECT_FALSE(lines.add(U'd', 1));
  EXPECT_FALSE(lines.add(U'e', 2));
  EXPECT_EQ(lines.finish(), uint16_t{1}) << "the last line, without a line feed: 4 / 3";
  EXPECT_FALSE(lines.finish()) << "nothing open";
  EXPECT_EQ(lines.add(U'\n', 7), uint16_t{7});
  EXPECT_FALSE(lines.finish()) << "a text that ends with a line feed has no line after it";
}

std::vector<uint8_t> from_base64(const std::string& text) {
  const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> out;
  uint32_t bits = 0;
  int count = 0;
  for (const char c : text) {
    if (c == '=') break;
    bits = (bits << 6) | static_cast<uint32_t>(digits.find(c));
    if ((count += 6) >= 8) {
      count -= 8;
      out.push_back(static_cast<uint8_t>((bits >> count) & 0xFF));
    }
  }
  return out;
}

std::string script_text(const std::string& page, const std::string& id) {
  const std::string open = "<script type=\"application/json\" id=\"" + id + "\">";
  const size_t start = page.find(open);
  if (start == std::string::npos) return "";
  const size_t from = start + open.size();
  return page.substr(from, page.find("</script>", from) - from);
}

TEST(SurprisalPage, WritesTheViewerThenOneBlockPerPageThenTheSummary) {
  charrnn_test::TempDir dir;
  const std::string path = dir.file("out/page.html");
  const charrnn::Vocab vocab({U'\n', U'a', U'b', U'c'});
  charrnn::SurprisalPageOptions options;
  options.page_chars = 4;
  options.top_k = 2;
  options.span_chars = 2;
  options.spans = 1;
  options.title = "model.pt on a</script>b.txt";
  charrnn::SurprisalPageWriter page(path, vocab, options);
  // "xab\nca": x is unknown, a the first known character
  const std::u32string text = U"xab\nca";
  const std::vector<double> logprobs{0, 0, std::log(0.5), std::log(0.25), std::log(0.125), std::log(0.75)};
  charrnn::CharScore score;
  score.top_ids = {1, 3, 0};  // a third that the page does not show
  score.top_logprobs = {std::log(0.75), std::log(0.125), std::log(0.1)};
  for (size_t i = 0; i < text.size(); ++i) {
    charrnn::TextChar c;
    c.offset = static_cast<int64_t>(i);
    c.code_point = text[i];
    c.known = i > 0;
    score.position = static_cast<int64_t>(i) - 1;
    score.id = c.known ? vocab.id_or_negative(c.code_point) : 0;
    score.logprob = logprobs[i];
    c.score = i > 1 ? &score : nullptr;
    page.add(c);
  }
  EXPECT_FALSE(std::filesystem::exists(path)) << "nothing visible before finish";
  charrnn::EvalResult result = charrnn::eval_result_from_sum(3.0, 4);
  result.unknown_chars = 1;
  page.finish(result);
  const std::string html = charrnn::read_file(path);

  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_EQ(html.find("a</script>b"), std::string::npos) << "the title cannot end its script early";
  for (const char* external : {"src=", "<link", "http://", "https://", "@import"})
    EXPECT_EQ(html.find(external), std::string::npos) << external << ": the page must not load anything";

  const auto meta = nlohmann::json::parse(script_text(html, "meta"));
  EXPECT_EQ(meta["title"], options.title);
  EXPECT_EQ(meta["vocab"], nlohmann::json::array({10, 97, 98, 99}));
  EXPECT_EQ(meta["id_bytes"], 1);
  EXPECT_EQ(meta["top_k"], 2);
  EXPECT_EQ(meta["unscored"], kUnscored);

  const std::regex block(
      "<script type=\"application/octet-stream\" class=\"page\" data-start=\"(\\d+)\" data-length=\"(\\d+)\" "
      "data-first-line=\"(\\d+)\" data-unknown=\"([^\"]*)\" data-lines=\"([^\"]*)\">([^<]*)</script>");
  std::vector<std::smatch> blocks;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), block); it != std::sregex_iterator(); ++it)
    blocks.push_back(*it);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0][1], "0");
  EXPECT_EQ(blocks[0][2], "4");
  EXPECT_EQ(blocks[0][3], "0");
  EXPECT_EQ(blocks[0][4], "[120]") << "x, as its code point";
  EXPECT_EQ(blocks[1][1], "4");
  EXPECT_EQ(blocks[1][2], "2");
  EXPECT_EQ(blocks[1][3], "1") << "one line before the second page";
  EXPECT_EQ(blocks[1][4], "[]");
  // line 1 ("xab\n": 1 and 2 bits scored) ends in page 1, line 2 ("ca": 3 bits and 0.415) at the end
  EXPECT_EQ(from_base64(blocks[0][5]), (std::vector<uint8_t>{0x80, 0x01}));  // 384 = 1.5 bits
  const uint16_t last_line = static_cast<uint16_t>((768 + quantise_surprisal(std::log(0.75)) + 1) / 2);
  EXPECT_EQ(from_base64(blocks[1][5]), (std::vector<uint8_t>{static_cast<uint8_t>(last_line & 0xFF),
                                                             static_cast<uint8_t>(last_line >> 8)}));

  // records: id, surprisal (uint16), then 2 x (id, surprisal)
  const std::vector<uint8_t> first = from_base64(blocks[0][6]);
  ASSERT_EQ(first.size(), 4u * 9);
  const auto u16 = [&](const std::vector<uint8_t>& b, size_t at) { return b[at] | (b[at + 1] << 8); };
  EXPECT_EQ(first[0], 255) << "unknown";
  EXPECT_EQ(u16(first, 1), kUnscored);
  EXPECT_EQ(first[3], 255) << "no predictions";
  EXPECT_EQ(first[9], 1) << "a";
  EXPECT_EQ(u16(first, 10), kUnscored) << "the first known character";
  EXPECT_EQ(first[18], 2) << "b";
  EXPECT_EQ(u16(first, 19), 256);
  EXPECT_EQ(first[21], 1);
  EXPECT_EQ(u16(first, 22), quantise_surprisal(std::log(0.75)));
  EXPECT_EQ(first[24], 3);
  EXPECT_EQ(u16(first, 25), 3 * 256);
  EXPECT_EQ(first[27], 0) << "the line feed";
  EXPECT_EQ(u16(first, 28), 512);
  EXPECT_EQ(from_base64(blocks[1][6]).size(), 2u * 9);

  const auto summary = nlohmann::json::parse(script_text(html, "summary"));
  EXPECT_DOUBLE_EQ(summary["bpc"].get<double>(), result.bpc);
  EXPECT_EQ(summary["scored"], 4);
  EXPECT_EQ(summary["unknown"], 1);
  EXPECT_EQ(summary["chars"], 6);
  EXPECT_EQ(summary["lines"], 2);
  EXPECT_EQ(summary["pages"], 2);
  ASSERT_EQ(summary["spans"].size(), 1u);
  EXPECT_EQ(summary["spans"][0]["text"], "\nc") << "2 + 3 bits, the highest pair";
  EXPECT_EQ(summary["spans"][0]["start"], 3);
  EXPECT_EQ(summary["spans"][0]["end"], 5);
  EXPECT_LT(html.find("<script type=\"application/json\" id=\"meta\">"), html.find("class=\"page\" data-start"));
  EXPECT_LT(html.rfind("class=\"page\" data-start"), html.find("<script type=\"application/json\" id=\"summary\">"));
}

TEST(SurprisalPage, RefusesBadOptionsAndLeavesNoFile) {
  charrnn_test::TempDir dir;
  const std::string path = dir.file("page.html");
  const charrnn::Vocab vocab({U'a', U'b'});
  charrnn::SurprisalPageOptions options;
  options.page_chars = 0;
  EXPECT_THROW(charrnn::SurprisalPageWriter(path, vocab, options), charrnn::UsageError);
  options = {};
  options.span_chars = 0;
  EXPECT_THROW(charrnn::SurprisalPageWriter(path, vocab, options), charrnn::UsageError);
  { charrnn::SurprisalPageWriter abandoned(path, vocab, {}); }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
