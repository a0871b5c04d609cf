// libFuzzer target for text -> code points -> vocabulary -> ids -> text.
//
// The input is used twice:
//   1. as bytes: decode_utf8 must accept exactly what the chunked decoder
//      (visit_utf8 with allow_cut_tail, as the corpus encoder reads files)
//      accepts, at any cut; and for valid UTF-8, every path back to bytes
//      (encode_utf8, Vocab::encode + decode, encode_skipping_unknown with a
//      partial vocabulary, to_json/from_json) must give the input back;
//   2. as little-endian 32-bit code points, which the public u32 APIs
//      (Vocab::from_text, encode_utf8) can be handed by any caller: invalid
//      ones must be an Error, never a crash or a giant allocation.
// charrnn::Error is the expected answer to bad input; anything else is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_utf8_vocab: %s\n", what.c_str());
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) finding(what);
}

// Decodes in two chunks cut at `cut`, carrying the cut-off tail over as the
// corpus encoder does. Returns false when either chunk is rejected.
bool decode_in_two_chunks(const std::string& bytes, size_t cut, std::u32string& out) {
  try {
    const std::string_view all(bytes);
    const size_t left = charrnn::visit_utf8(all.substr(0, cut), "fuzz", 0, /*allow_cut_tail=*/true,
                                            [&](char32_t cp) { out.push_back(cp); });
    const size_t resume = cut - left;
    charrnn::visit_utf8(all.substr(resume), "fuzz", resume, /*allow_cut_tail=*/false,
                        [&](char32_t cp) { out.push_back(cp); });
    return true;
  } catch (const charrnn::Error&) {
    return false;
  }
}

void check_valid_text(const std::string& bytes, const std::u32string& text) {
  check(charrnn::encode_utf8(text) == bytes, "encode_utf8(decode_utf8(x)) != x");
  for (char32_t cp : text) check(!charrnn::describe_char(cp).empty(), "describe_char gave nothing");

  const charrnn::Vocab vocab = charrnn::Vocab::from_text(text);
  check(vocab.size() == static_cast<int64_t>(std::set<char32_t>(text.begin(), text.end()).size()),
        "vocabulary size != distinct characters");
  int64_t total = 0;
  for (int64_t count : vocab.counts()) total += count;
  check(total == static_cast<int64_t>(text.size()), "vocabulary counts do not add up to the text length");
  const std::vector<int64_t> ids = vocab.encode(text, "fuzz");
  for (int64_t id : ids) check(id >= 0 && id < vocab.size(), "encode gave an id outside the vocabulary");
  check(vocab.decode(ids) == bytes, "decode(encode(x)) != x");
  const charrnn::Vocab stored = charrnn::Vocab::from_json(nlohmann::json::parse(vocab.to_json().dump()));
  check(stored.chars() == vocab.chars() && stored.counts() == vocab.counts(), "vocabulary JSON round trip");

  // A vocabulary of the first half only: what a model trained on other text meets.
  const charrnn::Vocab partial = charrnn::Vocab::from_text(std::u32string_view(text).substr(0, text.size() / 2));
  const charrnn::Vocab::Encoded skipped = partial.encode_skipping_unknown(text);
  std::u32string known;
  for (char32_t cp : text)
    if (partial.contains(cp)) known.push_back(cp);
  check(skipped.unknown == static_cast<int64_t>(text.size() - known.size()), "unknown count is wrong");
  check(partial.decode(skipped.ids) == charrnn::encode_utf8(known), "encode_skipping_unknown lost known text");
  const std::u32string unknown = partial.unknown_chars(text);
  check(unknown.empty() == (skipped.unknown == 0), "unknown_chars disagrees with encode_skipping_unknown");
  bool threw = false;
  try {
    partial.encode(text, "fuzz");
  } catch (const charrnn::UsageError&) {
    threw = true;
  }
  check(threw == !unknown.empty(), "encode must throw exactly when characters are unknown");
}

void fuzz_bytes(const std::string& bytes) {
  std::u32string text;
  bool valid = true;
  try {
    text = charrnn::decode_utf8(bytes, "fuzz");
  } catch (const charrnn::Error&) {
    valid = false;
  }
  // Cut at a place the input picks, and in the middle.
  const size_t cuts[] = {bytes.empty() ? 0 : static_cast<unsigned char>(bytes[0]) % (bytes.size() + 1),
                         bytes.size() / 2};
  for (size_t cut : cuts) {
    std::u32string chunked;
    const bool chunked_valid = decode_in_two_chunks(bytes, cut, chunked);
    check(chunked_valid == valid, "chunked decoding disagrees with decode_utf8 on validity");
    if (valid) check(chunked == text, "chunked decoding gave other characters");
  }
  if (valid) check_valid_text(bytes, text);
}

void fuzz_code_points(const uint8_t* data, size_t size) {
  std::u32string cps;
  for (size_t i = 0; i + 4 <= size; i += 4)
    cps.push_back(static_cast<char32_t>(data[i] | data[i + 1] << 8 | data[i + 2] << 16 |
                                        static_cast<uint32_t>(data[i + 3]) << 24));
  bool all_valid = true;
  for (char32_t cp : cps) all_valid = all_valid && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
  try {
    const charrnn::Vocab vocab = charrnn::Vocab::from_text(cps);
    check(all_valid, "Vocab::from_text accepted an invalid code point");
  } catch (const charrnn::Error&) {
    check(!all_valid, "Vocab::from_text rejected valid code points");
  }
  if (all_valid) {
    std::u32string back;
    try {
      back = charrnn::decode_utf8(charrnn::encode_utf8(cps), "fuzz");
    } catch (const charrnn::Error& e) {
      finding(std::string("encode_utf8 of valid code points is not valid UTF-8: ") + e.what());
    }
    check(back == cps, "decode_utf8(encode_utf8(x)) != x");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_bytes(std::string(reinterpret_cast<const char*>(data), size));
  fuzz_code_points(data, size);
  return 0;
}
