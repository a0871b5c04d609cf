#include "charrnn/utf8.h"

#include <cstdio>

#include "charrnn/error.h"

namespace charrnn {

namespace {

[[noreturn]] void throw_invalid(std::string_view source, size_t offset, const char* what) {
  throw Error(std::string(source) + ": invalid UTF-8 at byte offset " + std::to_string(offset) +
              " (" + what + "); charrnn reads UTF-8 text only");
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes, std::string_view source) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char lead = data[i];
    if (lead < 0x80) {  // ASCII fast path: most corpora are mostly ASCII
      out.push_back(lead);
      ++i;
      continue;
    }
    size_t length;
    char32_t cp;
    char32_t min_cp;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, cp = lead & 0x1F, min_cp = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, cp = lead & 0x0F, min_cp = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, cp = lead & 0x07, min_cp = 0x10000;
    } else {
      throw_invalid(source, i, "unexpected byte");
    }
    if (i + length > n) throw_invalid(source, i, "truncated sequence");
    for (size_t k = 1; k < length; ++k) {
      const unsigned char next = data[i + k];
      if ((next & 0xC0) != 0x80) throw_invalid(source, i, "bad continuation byte");
      cp = (cp << 6) | (next & 0x3F);
    }
    if (cp < min_cp) throw_invalid(source, i, "overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) throw_invalid(source, i, "surrogate code point");
    if (cp > 0x10FFFF) throw_invalid(source, i, "code point above U+10FFFF");
    out.push_back(cp);
    i += length;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

std::string describe_char(char32_t cp) {
  const bool invisible = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0xFEFF ||
                         cp == 0x200B || cp == ' ';
  if (invisible) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "U+%04X", static_cast<unsigned>(cp));
    return buffer;
  }
  std::string out = "'";
  append_utf8(out, cp);
  out += "'";
  return out;
}

}  // namespace charrnn
