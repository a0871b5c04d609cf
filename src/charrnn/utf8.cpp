#include "charrnn/utf8.h"

#include <cstdio>

#include <unicode/uchar.h>

#include "charrnn/error.h"

namespace charrnn {

void throw_invalid_utf8(std::string_view source, uint64_t offset, const char* what) {
  throw Error(std::string(source) + ": invalid UTF-8 at byte offset " + std::to_string(offset) + " (" + what +
              "); charrnn reads UTF-8 text only");
}

void throw_nul_byte(std::string_view source, uint64_t offset) {
  throw Error(std::string(source) + ": NUL byte at byte offset " + std::to_string(offset) +
              "; this looks like a binary file, not UTF-8 text");
}

std::u32string decode_utf8(std::string_view bytes, std::string_view source) {
  std::u32string out;
  out.reserve(bytes.size());
  visit_utf8(bytes, source, 0, /*allow_cut_tail=*/false, [&](char32_t cp) { out.push_back(cp); });
  return out;
}

bool is_valid_utf8(std::string_view bytes) {
  try {
    visit_utf8(bytes, "", 0, /*allow_cut_tail=*/false, [](char32_t) {});
    return true;
  } catch (const Error&) {
    return false;
  }
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

std::string unicode_name(char32_t cp) {
  // control characters have no name in Unicode, and ICU's aliases are only
  // its corrections; the three a text holds are named by their aliases
  if (cp == '\t') return "CHARACTER TABULATION";
  if (cp == '\n') return "LINE FEED";
  if (cp == '\r') return "CARRIAGE RETURN";
  char buffer[128];
  for (const UCharNameChoice choice : {U_UNICODE_CHAR_NAME, U_CHAR_NAME_ALIAS}) {
    UErrorCode status = U_ZERO_ERROR;
    const int32_t n = u_charName(static_cast<UChar32>(cp), choice, buffer, sizeof buffer, &status);
    if (U_SUCCESS(status) && n > 0) return std::string(buffer, static_cast<size_t>(n));
  }
  return "";
}

std::string describe_char_named(char32_t cp) {
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(cp));
  std::string named = code;
  if (const std::string name = unicode_name(cp); !name.empty()) named += " " + name;
  const std::string plain = describe_char(cp);
  return plain.front() == '\'' ? plain + " (" + named + ")" : named;
}

}  // namespace charrnn
