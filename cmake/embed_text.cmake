# cmake -DINPUT=... -DOUTPUT=... -DNAME=... [-DMARKER=...] -P embed_text.cmake
#
# Writes OUTPUT, a C++ source that defines `const char* const charrnn::NAME`
# as the text of INPUT (only what follows the line that holds MARKER, when
# MARKER is given), in a raw string literal. It is how code in another language that the build ships (the
# TorchScript program of an export) stays a file of that language, run by its
# own tests, and still needs no file at run time. Run as a build step
# (add_custom_command), so an edit to INPUT rebuilds without reconfiguring.
foreach(var INPUT OUTPUT NAME)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_text.cmake: -D${var}=... is required")
  endif()
endforeach()
file(READ "${INPUT}" text)
if(DEFINED MARKER)
  string(FIND "${text}" "${MARKER}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${INPUT}: no line holds \"${MARKER}\", which marks where the embedded text starts")
  endif()
  string(SUBSTRING "${text}" ${at} -1 text)
  string(FIND "${text}" "\n" end_of_line)
  math(EXPR start "${end_of_line} + 1")
  string(SUBSTRING "${text}" ${start} -1 text)
endif()
set(delimiter "charrnn_embedded")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} holds )${delimiter}\", which would end its raw string literal")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake; edit that file instead.\n"
  "namespace charrnn {\n"
  "extern const char* const ${NAME};\n"
  "const char* const ${NAME} = R\"${delimiter}(${text})${delimiter}\";\n"
  "}  // namespace charrnn\n")
# an unchanged text leaves the source's time alone, so nothing recompiles
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
