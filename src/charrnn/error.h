// Exceptions thrown by charrnn_core. The library never exits or aborts on bad
// input; it throws one of these with a message a user can act on, and the CLI
// (src/cli/main.cpp) turns it into one "error: ..." line and an exit status.
#pragma once

#include <stdexcept>
#include <string>

namespace charrnn {

/// A runtime failure: unreadable file, corrupt checkpoint, write error.
/// The CLI exits with status 1.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The user asked for something invalid: bad flag, bad config key or value,
/// a prime with characters the model never saw. The CLI exits with status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace charrnn
