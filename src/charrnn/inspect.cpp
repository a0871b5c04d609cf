#include "charrnn/inspect.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

extern const char* const kInspectPageSource;

namespace {

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return c >= 0xC0 && c != 0xD7 && c != 0xF7 && !(c >= 0x2000 && c <= 0x206F);
}

bool is_upper(char32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7); }

}  // namespace

std::vector<TextFeature> text_features(std::u32string_view text) {
  const size_t n = text.size();
  std::vector<TextFeature> features = {
      {"in_quotes", "inside double quotes", {}},
      {"bracket_depth", "nesting depth of ( [ {", {}},
      {"in_brackets", "inside ( [ or {", {}},
      {"line_position", "characters since the last newline", {}},
      {"word_start", "first letter or digit of a word", {}},
      {"upper_case", "an upper-case letter", {}},
      {"digit", "a digit 0-9", {}},
      {"after_newline", "first character of a line", {}},
  };
  for (TextFeature& f : features) f.values.resize(n);
  bool quoted = false;
  int64_t depth = 0, column = 0;
  char32_t previous = U'\n';  // the text starts as after a newline and a non-word character
  for (size_t t = 0; t < n; ++t) {
    const char32_t c = text[t];
    if (c == U'"') quoted = !quoted;
    else if (c == U'\u201C') quoted = true;
    else if (c == U'\u201D') quoted = false;
    if (c == U'(' || c == U'[' || c == U'{') ++depth;
    else if ((c == U')' || c == U']' || c == U'}') && depth > 0) --depth;
    column = c == U'\n' ? 0 : column + 1;
    features[0].values[t] = quoted ? 1.0f : 0.0f;
    features[1].values[t] = static_cast<float>(depth);
    features[2].values[t] = depth > 0 ? 1.0f : 0.0f;
    features[3].values[t] = static_cast<float>(column);
    features[4].values[t] = is_word_char(c) && !is_word_char(previous) ? 1.0f : 0.0f;
    features[5].values[t] = is_upper(c) ? 1.0f : 0.0f;
    features[6].values[t] = c >= U'0' && c <= U'9' ? 1.0f : 0.0f;
    features[7].values[t] = previous == U'\n' ? 1.0f : 0.0f;
    previous = c;
  }
  return features;
}

torch::Tensor pearson_columns(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(0) == b.size(0), "pearson_columns needs (T, U) and (T, K)");
  const int64_t T = a.size(0);
  if (T < 2) return torch::full({a.size(1), b.size(1)}, std::numeric_limits<double>::quiet_NaN(), torch::kDouble);
  // centred and scaled to unit norm, a column's dot product with another is r
  const auto unit_columns = [](const torch::Tensor& x) {
    const torch::Tensor centred = x.to(torch::kDouble) - x.to(torch::kDouble).mean(0, true);  // (T, N)
    const torch::Tensor norm = centred.norm(2, 0, true);                                       // (1, N)
    // a constant column's rounding residue is not variance: such a norm is
    // taken as zero relative to the column's magnitude
    const torch::Tensor scale = x.to(torch::kDouble).abs().amax(0, true) * std::sqrt(static_cast<double>(x.size(0)));
    const torch::Tensor constant = norm <= scale * 1e-12;
    return std::make_pair(centred / norm.masked_fill(constant, 1.0), constant);
  };
  auto [za, ca] = unit_columns(a);
  auto [zb, cb] = unit_columns(b);
  torch::Tensor r = za.t().mm(zb).clamp(-1.0, 1.0);  // (U, K)
  return r.masked_fill(ca.t() | cb, std::numeric_limits<double>::quiet_NaN());
}

std::string to_string(StateKind kind) { return kind == StateKind::Hidden ? "h" : "c"; }

Inspection inspect(CharRNN& model, const Vocab& vocab, std::u32string_view text, const InspectOptions& options) {
  if (options.max_chars < 0) throw UsageError("max_chars must be >= 0, got " + std::to_string(options.max_chars));
  if (options.top_units < 1) throw UsageError("top_units must be >= 1, got " + std::to_string(options.top_units));
  Inspection result;
  std::vector<int64_t> ids;
  const size_t limit = options.max_chars > 0 ? static_cast<size_t>(options.max_chars) : text.size();
  for (size_t i = 0; i < text.size() && ids.size() < limit; ++i) {
    const int64_t id = vocab.id_or_negative(text[i]);
    if (id < 0) {
      ++result.unknown_chars;
      continue;
    }
    ids.push_back(id);
    result.text.push_back(text[i]);
  }
  if (ids.size() < 2)
    throw UsageError("inspecting needs at least 2 characters the model knows; read " + std::to_string(ids.size()) +
                     " (" + std::to_string(result.unknown_chars) + " unknown skipped)");

  result.states = model->trace(torch::tensor(ids, torch::kLong)).first;  // h, c: (L, T, H); never dropout
  result.features = text_features(result.text);

  const int64_t L = result.states.h.size(0), T = result.states.h.size(1), H = result.states.h.size(2);
  const int64_t K = static_cast<int64_t>(result.features.size());
  std::vector<torch::Tensor> kinds = {result.states.h};
  if (result.states.c.defined()) kinds.push_back(result.states.c);
  const int64_t S = static_cast<int64_t>(kinds.size());
  const torch::Tensor units = torch::stack(kinds).permute({2, 0, 1, 3}).reshape({T, S * L * H});  // (T, S*L*H)
  torch::Tensor values = torch::empty({T, K}, torch::kFloat);                                       // (T, K)
  for (int64_t k = 0; k < K; ++k)
    values.select(1, k).copy_(torch::from_blob(result.features[static_cast<size_t>(k)].values.data(), {T}, torch::kFloat));
  result.correlations = pearson_columns(units, values).reshape({S, L, H, K});

  // each unit once, by its strongest feature
  const torch::Tensor r = result.correlations.reshape({S * L * H, K}).contiguous();
  const double* p = r.data_ptr<double>();
  std::vector<UnitCorrelation> best;
  for (int64_t u = 0; u < S * L * H; ++u) {
    UnitCorrelation top;
    bool any = false;
    for (int64_t k = 0; k < K; ++k) {
      const double v = p[u * K + k];
      if (std::isnan(v) || (any && std::abs(v) <= std::abs(top.r))) continue;
      top.r = v;
      top.feature = static_cast<size_t>(k);
      any = true;
    }
    if (!any) continue;
    top.state = u / (L * H) == 0 ? StateKind::Hidden : StateKind::Cell;
    top.layer = (u / H) % L;
    top.unit = u % H;
    best.push_back(top);
  }
  std::stable_sort(best.begin(), best.end(),
                   [](const UnitCorrelation& x, const UnitCorrelation& y) { return std::abs(x.r) > std::abs(y.r); });
  if (best.size() > static_cast<size_t>(options.top_units)) best.resize(static_cast<size_t>(options.top_units));
  result.ranking = std::move(best);
  return result;
}

namespace {

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = bytes[i], b1 = i + 1 < bytes.size() ? bytes[i + 1] : 0, b2 = i + 2 < bytes.size() ? bytes[i + 2] : 0;
    const uint32_t triple = (b0 << 16) | (b1 << 8) | b2;
    out += digits[(triple >> 18) & 63];
    out += digits[(triple >> 12) & 63];
    out += i + 1 < bytes.size() ? digits[(triple >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? digits[triple & 63] : '=';
  }
  return out;
}

// 3 decimals are all the page shows; null where r is undefined
nlohmann::json rounded(double v) {
  if (std::isnan(v)) return nullptr;
  return std::round(v * 1000.0) / 1000.0;
}

}  // namespace

std::string inspect_page(const Inspection& inspection, const ModelOptions& model, const std::string& title) {
  using nlohmann::json;
  std::vector<torch::Tensor> kinds = {inspection.states.h};
  if (inspection.states.c.defined()) kinds.push_back(inspection.states.c);
  const int64_t S = static_cast<int64_t>(kinds.size()), L = inspection.states.h.size(0),
                T = inspection.states.h.size(1), H = inspection.states.h.size(2);
  const int64_t K = static_cast<int64_t>(inspection.features.size());
  json features = json::array();
  for (const TextFeature& f : inspection.features) features.push_back({{"name", f.name}, {"description", f.description}});
  json units = json::array();
  const torch::Tensor r = inspection.correlations.contiguous();
  const double* rp = r.data_ptr<double>();
  std::vector<uint8_t> q(static_cast<size_t>(T));
  for (int64_t s = 0; s < S; ++s) {
    const torch::Tensor states = kinds[static_cast<size_t>(s)].to(torch::kFloat).contiguous();  // (L, T, H)
    for (int64_t l = 0; l < L; ++l) {
      const torch::Tensor layer = states[l].t().contiguous();  // (H, T)
      for (int64_t i = 0; i < H; ++i) {
        const float* v = layer[i].data_ptr<float>();
        const auto [lo_it, hi_it] = std::minmax_element(v, v + T);
        const double lo = *lo_it, hi = *hi_it, step = hi > lo ? (hi - lo) / 255.0 : 1.0;
        for (int64_t t = 0; t < T; ++t) q[static_cast<size_t>(t)] = static_cast<uint8_t>(std::lround((v[t] - lo) / step));
        json correlations = json::array();
        for (int64_t k = 0; k < K; ++k) correlations.push_back(rounded(rp[((s * L + l) * H + i) * K + k]));
        units.push_back({{"lo", lo}, {"hi", hi}, {"q", base64(q)}, {"r", std::move(correlations)}});
      }
    }
  }
  json ranking = json::array();
  for (const UnitCorrelation& u : inspection.ranking)
    ranking.push_back({{"state", to_string(u.state)},
                       {"layer", u.layer},
                       {"unit", u.unit},
                       {"feature", inspection.features[u.feature].name},
                       {"r", rounded(u.r)}});
  const json data = {{"title", title},
                     {"cell", to_string(model.cell)},
                     {"layers", L},
                     {"hidden", H},
                     {"states", S == 2 ? json::array({"h", "c"}) : json::array({"h"})},
                     {"unknown_chars", inspection.unknown_chars},
                     {"text", encode_utf8(inspection.text)},
                     {"features", std::move(features)},
                     {"units", std::move(units)},
                     {"ranking", std::move(ranking)}};
  std::string block = data.dump(-1, ' ', false, json::error_handler_t::replace);
  // "</" would end the <script> block early in an HTML parser; "<\/" is the same JSON string
  for (size_t at = block.find("</"); at != std::string::npos; at = block.find("</", at + 3)) block.insert(at + 1, "\\");
  std::string page = kInspectPageSource;
  const std::string marker = "\"CHARRNN_INSPECT_DATA\"";
  const size_t at = page.find(marker);
  TORCH_CHECK(at != std::string::npos, "inspect.html has no ", marker);
  page.replace(at, marker.size(), block);
  return page;
}

}  // namespace charrnn
