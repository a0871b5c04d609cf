// docs/config.md against the parser: the same keys, the same defaults, the
// same JSON types, so the reference cannot drift from the code.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "charrnn/config.h"
#include "charrnn/sampler.h"

namespace {

struct DocRow {
  std::string type, default_value;
};

// "| `train.steps` | integer ≥ 0 | 2000 | meaning |" -> {"train.steps", {...}}
std::map<std::string, DocRow> documented_keys() {
  std::ifstream in(std::string(CHARRNN_SOURCE_DIR) + "/docs/config.md");
  EXPECT_TRUE(in.good()) << "docs/config.md is missing";
  std::map<std::string, DocRow> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    std::stringstream s(line.substr(1));
    for (std::string cell; std::getline(s, cell, '|');) {
      const size_t first = cell.find_first_not_of(' '), last = cell.find_last_not_of(' ');
      cells.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
    }
    if (cells.size() < 4) continue;
    const auto unquote = [](std::string v) {
      if (v.size() >= 2 && v.front() == '`' && v.back() == '`') v = v.substr(1, v.size() - 2);
      return v;
    };
    const std::string key = unquote(cells[0]);
    EXPECT_EQ(rows.count(key), 0u) << key << " is listed twice";
    rows[key] = DocRow{cells[1], unquote(cells[2])};
  }
  return rows;
}

TEST(ConfigDoc, ListsExactlyTheKeysTheParserKnowsWithTheirDefaults) {
  const nlohmann::json defaults = charrnn::to_json(charrnn::Config{});
  std::map<std::string, DocRow> rows = documented_keys();
  ASSERT_FALSE(rows.empty());
  for (const auto& [section, values] : defaults.items()) {
    for (const auto& [name, value] : values.items()) {
      const std::string key = section + "." + name;
      SCOPED_TRACE(key);
      const auto row = rows.find(key);
      if (row == rows.end()) {
        ADD_FAILURE() << key << " is missing from docs/config.md";
        continue;
      }
      const DocRow& doc = row->second;
      if (value.is_string()) {
        // a quoted default is a JSON string ("", "\n\n"); others are the text itself
        const std::string documented = doc.default_value.size() >= 2 && doc.default_value.front() == '"'
                                           ? nlohmann::json::parse(doc.default_value).get<std::string>()
                                           : doc.default_value;
        EXPECT_EQ(documented, value.get<std::string>());
        EXPECT_TRUE(doc.type.rfind("string", 0) == 0 || doc.type.find('`') != std::string::npos) << doc.type;
      } else if (value.is_boolean()) {
        EXPECT_EQ(doc.default_value, value.get<bool>() ? "true" : "false");
        EXPECT_EQ(doc.type.rfind("boolean", 0), 0u) << doc.type;
      } else if (value.is_number_integer()) {
        EXPECT_EQ(std::stoll(doc.default_value), value.get<int64_t>());
        EXPECT_EQ(doc.type.rfind("integer", 0), 0u) << doc.type;
      } else {
        EXPECT_DOUBLE_EQ(std::stod(doc.default_value), value.get<double>());
        EXPECT_EQ(doc.type.rfind("number", 0), 0u) << doc.type;
      }
      // and the parser accepts the key by that name
      nlohmann::json j;
      j[section][name] = value;
      EXPECT_NO_THROW(charrnn::config_from_json(j, "docs/config.md"));
      rows.erase(row);
    }
  }
  for (const auto& [key, row] : rows) ADD_FAILURE() << "docs/config.md lists " << key << ", which the parser does not know";
}

TEST(ConfigDoc, SamplingRangesAreTheCodes) {
  const std::map<std::string, DocRow> rows = documented_keys();
  for (const charrnn::SamplingRange* range : charrnn::sampling_ranges()) {
    const std::string key = std::string("sample.") + range->setting;
    SCOPED_TRACE(key);
    ASSERT_EQ(rows.count(key), 1u);
    EXPECT_EQ(rows.at(key).type, std::string(range->integer ? "integer " : "number ") + charrnn::describe_range(*range));
  }
}

}  // namespace
