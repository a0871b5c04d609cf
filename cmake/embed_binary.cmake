# cmake -DINPUT=... -DOUTPUT=... -DNAME=... -P embed_binary.cmake
#
# Writes OUTPUT, a C++ source that defines `const unsigned char charrnn::NAME[]`
# as the bytes of INPUT and `const std::size_t charrnn::NAME_size` as their
# count: embed_text.cmake's counterpart for a file that is not text (the web
# export's WebAssembly kernel, which the build assembles from its text
# format). Run as a build step (add_custom_command), so a changed INPUT
# rebuilds without reconfiguring.
foreach(var INPUT OUTPUT NAME)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_binary.cmake: -D${var}=... is required")
  endif()
endforeach()
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR size "${digits} / 2")
if(size EQUAL 0)
  message(FATAL_ERROR "${INPUT} is empty")
endif()
# 16 bytes a line: "0x00, 0x61, ..." (CMake's regexes have no {n}, hence the loop)
set(bytes "")
foreach(at RANGE 0 ${digits} 32)
  string(SUBSTRING "${hex}" ${at} 32 line)
  if(NOT line STREQUAL "")
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1, " line "${line}")
    string(APPEND bytes "  ${line}\n")
  endif()
endforeach()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_binary.cmake; edit the file it is built from instead.\n"
  "#include <cstddef>\n"
  "namespace charrnn {\n"
  "extern const unsigned char ${NAME}[];\n"
  "extern const std::size_t ${NAME}_size;\n"
  "const unsigned char ${NAME}[] = {\n${bytes}};\n"
  "const std::size_t ${NAME}_size = ${size};\n"
  "}  // namespace charrnn\n")
# unchanged bytes leave the source's time alone, so nothing recompiles
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
