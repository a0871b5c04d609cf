// Strict UTF-8 <-> Unicode code points. charrnn models characters (code
// points), never bytes, so every text that enters the library passes here.
// Deliberately strict: overlong forms, surrogates, code points above
// U+10FFFF and truncated sequences are errors with a byte offset, because a
// silently "repaired" corpus trains a model on characters the user never wrote.
#pragma once

#include <string>
#include <string_view>

namespace charrnn {

/// Decodes UTF-8; throws Error naming `source` and the byte offset of the
/// first invalid sequence.
std::u32string decode_utf8(std::string_view bytes, std::string_view source = "input");

/// Appends the UTF-8 encoding of `code_point` to `out`.
void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(std::u32string_view text);

/// A printable description of one character for error messages:
/// 'x' for visible characters, U+000A for control and invisible ones.
std::string describe_char(char32_t code_point);

}  // namespace charrnn
