// libFuzzer target for the config readers: JSON text -> config_from_json ->
// validate, and "section.key=value" lines -> apply_overrides -> validate.
//
// Input: JSON text, then optionally a NUL byte and newline-separated --set
// assignments. charrnn::Error (UsageError included) and nlohmann's exceptions
// are the expected answer to bad input; a crash, a sanitizer report, a leak, a
// hang or any other exception is a finding. Beyond not crashing, it checks
// two properties a user relies on:
//   - fidelity: a value the file sets is the value the config holds (no
//     silent wrap-around or truncation of numbers);
//   - a config that passes validate() survives to_json -> dump -> parse ->
//     config_from_json unchanged, because every checkpoint stores it so.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "charrnn/config.h"
#include "charrnn/error.h"

namespace {

using nlohmann::json;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_config: %s\n", what.c_str());
  std::abort();
}

// The stored config must read back as itself.
void check_round_trip(const charrnn::Config& config, const char* how) {
  std::string text;
  try {
    text = charrnn::to_json(config).dump();
  } catch (const std::exception& e) {
    finding(std::string("a validated config (") + how + ") cannot be serialised: " + e.what());
  }
  charrnn::Config back;
  try {
    back = charrnn::config_from_json(json::parse(text), "round trip");
    charrnn::validate(back, "round trip");
  } catch (const std::exception& e) {
    finding(std::string("a validated config (") + how + ") does not read back: " + e.what() + "\n" + text);
  }
  if (charrnn::to_json(back) != charrnn::to_json(config))
    finding(std::string("round trip (") + how + ") changed the config:\n" + text + "\n" +
            charrnn::to_json(back).dump());
}

// Every scalar the input sets must be held unchanged. Numbers are compared as
// doubles: nlohmann's own == casts unsigned to signed, which would hide a
// wrapped 2^64-1 == -1.
void check_fidelity(const json& input, const charrnn::Config& config) {
  const json stored = charrnn::to_json(config);
  for (const auto& section : input.items()) {
    if (!section.value().is_object()) continue;
    for (const auto& item : section.value().items()) {
      const json& given = item.value();
      const json& held = stored.at(section.key()).at(item.key());
      const bool same = given.is_number() ? held.is_number() && given.get<double>() == held.get<double>()
                                          : given == held;
      if (!same)
        finding("config holds " + held.dump() + " for " + section.key() + "." + item.key() + ", the file says " +
                given.dump());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json_text = input.substr(0, nul);
  std::vector<std::string> assignments;
  if (nul != std::string::npos) {
    size_t start = nul + 1;
    while (start <= input.size()) {
      const size_t end = std::min(input.find('\n', start), input.size());
      assignments.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }

  charrnn::Config config;
  try {
    const json j = json::parse(json_text);
    config = charrnn::config_from_json(j, "fuzz");
    check_fidelity(j, config);
    charrnn::validate(config, "fuzz");
    check_round_trip(config, "file");
  } catch (const charrnn::Error&) {
  } catch (const json::exception&) {
  }

  try {
    const charrnn::Config overridden = charrnn::apply_overrides(config, assignments);
    charrnn::validate(overridden, "fuzz");
    check_round_trip(overridden, "--set");
  } catch (const charrnn::Error&) {
  } catch (const json::exception&) {
  }
  return 0;
}
