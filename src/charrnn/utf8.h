// Strict UTF-8 <-> Unicode code points. charrnn models characters (code
// points), never bytes, so every text that enters the library passes here.
// Deliberately strict: overlong forms, surrogates, code points above
// U+10FFFF and truncated sequences are errors with a byte offset, because a
// silently "repaired" corpus trains a model on characters the user never wrote.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace charrnn {

/// Decodes UTF-8; throws Error naming `source` and the byte offset of the
/// first invalid sequence.
std::u32string decode_utf8(std::string_view bytes, std::string_view source = "input");

/// Whether `bytes` is strict UTF-8, i.e. whether decode_utf8 accepts it.
bool is_valid_utf8(std::string_view bytes);

/// Calls `visit(code_point)` for each character of `bytes`, strictly, as
/// decode_utf8 does; `base_offset` is added to the offsets in messages, for
/// text read in chunks. Returns how many trailing bytes were left undecoded
/// because they start a sequence that `bytes` cuts off (only when
/// `allow_cut_tail`; otherwise that is an error too).
template <typename Visit>
size_t visit_utf8(std::string_view bytes, std::string_view source, uint64_t base_offset, bool allow_cut_tail,
                  Visit&& visit);

/// Appends the UTF-8 encoding of `code_point` to `out`.
void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(std::u32string_view text);

/// A printable description of one character for error messages:
/// 'x' for visible characters, U+000A for control and invisible ones.
std::string describe_char(char32_t code_point);
/// Unicode's name of a character ("APOSTROPHE"), from ICU; "LINE FEED",
/// "CHARACTER TABULATION" and "CARRIAGE RETURN" for those controls; "" when
/// it has none.
std::string unicode_name(char32_t code_point);
/// describe_char with the code point and name, for a character a user has
/// to find in their text: "''' (U+0027 APOSTROPHE)", "U+000A LINE FEED".
std::string describe_char_named(char32_t code_point);

[[noreturn]] void throw_invalid_utf8(std::string_view source, uint64_t offset, const char* what);
/// The error for a NUL byte in a text file: it means a binary file.
[[noreturn]] void throw_nul_byte(std::string_view source, uint64_t offset);

template <typename Visit>
size_t visit_utf8(std::string_view bytes, std::string_view source, uint64_t base_offset, bool allow_cut_tail,
                  Visit&& visit) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char lead = data[i];
    if (lead < 0x80) {  // ASCII fast path: most corpora are mostly ASCII
      visit(static_cast<char32_t>(lead));
      ++i;
      continue;
    }
    size_t length;
    char32_t cp, min_cp;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, cp = lead & 0x1F, min_cp = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, cp = lead & 0x0F, min_cp = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, cp = lead & 0x07, min_cp = 0x10000;
    } else {
      throw_invalid_utf8(source, base_offset + i, "unexpected byte");
    }
    if (i + length > n) {
      for (size_t k = i + 1; k < n; ++k)
        if ((data[k] & 0xC0) != 0x80) throw_invalid_utf8(source, base_offset + i, "bad continuation byte");
      if (allow_cut_tail) return n - i;
      throw_invalid_utf8(source, base_offset + i, "truncated sequence");
    }
    for (size_t k = 1; k < length; ++k) {
      const unsigned char next = data[i + k];
      if ((next & 0xC0) != 0x80) throw_invalid_utf8(source, base_offset + i, "bad continuation byte");
      cp = (cp << 6) | (next & 0x3F);
    }
    if (cp < min_cp) throw_invalid_utf8(source, base_offset + i, "overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) throw_invalid_utf8(source, base_offset + i, "surrogate code point");
    if (cp > 0x10FFFF) throw_invalid_utf8(source, base_offset + i, "code point above U+10FFFF");
    visit(cp);
    i += length;
  }
  return 0;
}

}  // namespace charrnn
