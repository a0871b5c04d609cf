// Writes a file so that a kill, a crash or a full disk never leaves a
// half-written one in place: write to a temporary file in the same folder,
// fsync it, rename it over the target, then fsync the folder.
#pragma once

#include <string>

namespace charrnn {

/// Replaces `path` with `bytes` atomically. Throws Error (naming the path and
/// the system's reason) and leaves any previous file untouched on failure.
void write_file_atomically(const std::string& path, const std::string& bytes);

/// Creates the folder holding `path` (and its parents) when missing.
void ensure_parent_directory(const std::string& path);

}  // namespace charrnn
