// export_onnx.h's graph, built with ONNX's own protobuf classes (onnx_pb.h
// from libonnx-dev) and checked by onnx's checker and shape inference before
// it is written. Without libonnx-dev (CHARRNN_WITH_ONNX undefined) only the
// error remains. Sampling is not part of the graph: ONNX has no sampler a
// runtime must implement alike, and the caller's loop is a few lines.
#include "charrnn/export_onnx.h"

#include "charrnn/error.h"

#ifdef CHARRNN_WITH_ONNX

#include <vector>

#include <nlohmann/json.hpp>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <torch/torch.h>

#include "charrnn/cell.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

constexpr const char* kOnnxFormat = "charrnn-onnx-1";

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  /// A float initializer holding `t`'s values (contiguous, little-endian).
  void add_float(const std::string& name, const torch::Tensor& t) {
    const torch::Tensor values = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
    onnx::TensorProto* init = graph_.add_initializer();
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : values.sizes()) init->add_dims(d);
    init->set_raw_data(values.data_ptr(), static_cast<size_t>(values.numel()) * sizeof(float));
  }

  /// A 1-D int64 initializer (Slice's and Squeeze's index inputs).
  void add_ints(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* init = graph_.add_initializer();
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::INT64);
    init->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) init->add_int64_data(v);
  }

  onnx::NodeProto* node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }

  static void attribute(onnx::NodeProto* n, const std::string& name, int64_t value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  static void attribute(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& values) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }

  /// A graph input or output; a dim is a number or a name ("batch").
  static void value_info(onnx::ValueInfoProto* v, const std::string& name, onnx::TensorProto::DataType type,
                         const std::vector<nlohmann::json>& dims) {
    v->set_name(name);
    onnx::TypeProto_Tensor* tensor = v->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(type);
    onnx::TensorShapeProto* shape = tensor->mutable_shape();
    for (const auto& d : dims) {
      onnx::TensorShapeProto_Dimension* dim = shape->add_dim();
      if (d.is_string())
        dim->set_dim_param(d.get<std::string>());
      else
        dim->set_dim_value(d.get<int64_t>());
    }
  }
  void input(const std::string& name, onnx::TensorProto::DataType type, const std::vector<nlohmann::json>& dims) {
    value_info(graph_.add_input(), name, type, dims);
  }
  void output(const std::string& name, onnx::TensorProto::DataType type, const std::vector<nlohmann::json>& dims) {
    value_info(graph_.add_output(), name, type, dims);
  }

 private:
  onnx::GraphProto& graph_;
};

// A PyTorch weight of G blocks of H rows (cell.h) with its blocks in ONNX's
// order, `onnx_order` naming them by gate_order's letters.
torch::Tensor onnx_gates(const torch::Tensor& weight, const CellFacts& facts, std::string_view onnx_order,
                         int64_t hidden) {
  std::vector<torch::Tensor> blocks;
  for (char letter : onnx_order) {
    const int64_t k = facts.gate(letter);
    blocks.push_back(weight.narrow(0, k * hidden, hidden));
  }
  return torch::cat(blocks, 0);
}

std::string vocab_json(const Vocab& vocab) {
  nlohmann::json chars = nlohmann::json::array();
  for (int64_t id = 0; id < vocab.size(); ++id) {
    std::string text;
    append_utf8(text, vocab.char_at(id));
    chars.push_back(text);
  }
  return chars.dump();
}

void add_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* entry = model.add_metadata_props();
  entry->set_key(key);
  entry->set_value(value);
}

onnx::ModelProto build_model(const Checkpoint& checkpoint) {
  CharRNN net = restore_model(checkpoint, torch::kCPU);
  torch::NoGradGuard no_grad;
  const auto params = net->named_parameters();
  const ModelOptions& o = checkpoint.config.model;
  const CellFacts& facts = cell_facts(o.cell);
  const std::string_view order = onnx_gate_order(o.cell);
  const int64_t H = o.hidden_size, L = o.num_layers, V = checkpoint.vocab.size();

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("charrnn");
  model.set_producer_version(CHARRNN_VERSION);
  model.set_doc_string("charrnn character-level " + to_string(o.cell) + " language model");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);

  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("charrnn");
  GraphBuilder g(graph);
  const auto f32 = onnx::TensorProto::FLOAT;
  g.input("ids", onnx::TensorProto::INT64, {"batch", "time"});
  g.input("h0", f32, {L, "batch", H});
  if (facts.has_cell_state()) g.input("c0", f32, {L, "batch", H});
  g.output("logits", f32, {"batch", "time", V});
  g.output("hn", f32, {L, "batch", H});
  if (facts.has_cell_state()) g.output("cn", f32, {L, "batch", H});

  g.add_float("embedding.weight", params["embedding.weight"]);  // (V, E)
  g.node("Gather", "embedding", {"embedding.weight", "ids"}, {"embedded"});  // (B, T, E)
  auto* to_time_major = g.node("Transpose", "to_time_major", {"embedded"}, {"x0"});  // (T, B, E)
  GraphBuilder::attribute(to_time_major, "perm", std::vector<int64_t>{1, 0, 2});
  g.add_ints("axis0", {0});
  g.add_ints("axis1", {1});

  const char* op = o.cell == CellType::LSTM ? "LSTM" : o.cell == CellType::GRU ? "GRU" : "RNN";
  std::vector<std::string> hn, cn;
  std::string x = "x0";
  for (int64_t l = 0; l < L; ++l) {
    const std::string s = std::to_string(l), layer = "layer" + s;
    // (G*H, I) -> (1, G*H, I): ONNX's leading dim is the direction
    const auto w = [&](const char* name) {
      return onnx_gates(params[std::string("rnn.") + name + "_l" + s], facts, order, H);
    };
    g.add_float(layer + ".W", w("weight_ih").unsqueeze(0));
    g.add_float(layer + ".R", w("weight_hh").unsqueeze(0));
    g.add_float(layer + ".B", torch::cat({w("bias_ih"), w("bias_hh")}, 0).unsqueeze(0));  // (1, 2*G*H): [Wb, Rb]
    g.add_ints(layer + ".start", {l});
    g.add_ints(layer + ".end", {l + 1});
    g.node("Slice", layer + ".h0", {"h0", layer + ".start", layer + ".end", "axis0"}, {layer + ".h0"});  // (1, B, H)
    std::vector<std::string> inputs = {x, layer + ".W", layer + ".R", layer + ".B", "", layer + ".h0"};
    std::vector<std::string> outputs = {layer + ".y", layer + ".hn"};
    if (facts.has_cell_state()) {
      g.node("Slice", layer + ".c0", {"c0", layer + ".start", layer + ".end", "axis0"}, {layer + ".c0"});
      inputs.push_back(layer + ".c0");
      outputs.push_back(layer + ".cn");
      cn.push_back(layer + ".cn");
    }
    hn.push_back(layer + ".hn");
    auto* cell = g.node(op, layer, inputs, outputs);  // y: (T, 1, B, H); hn, cn: (1, B, H)
    GraphBuilder::attribute(cell, "hidden_size", H);
    if (o.cell == CellType::GRU) GraphBuilder::attribute(cell, "linear_before_reset", int64_t{1});
    x = layer + ".out";
    g.node("Squeeze", layer + ".squeeze", {layer + ".y", "axis1"}, {x});  // (T, B, H)
  }
  auto* to_batch_major = g.node("Transpose", "to_batch_major", {x}, {"features"});  // (B, T, H)
  GraphBuilder::attribute(to_batch_major, "perm", std::vector<int64_t>{1, 0, 2});
  g.add_float("head.weight_t", params["head.weight"].t());  // (H, V)
  g.add_float("head.bias", params["head.bias"]);            // (V)
  g.node("MatMul", "head", {"features", "head.weight_t"}, {"head.product"});
  g.node("Add", "head_bias", {"head.product", "head.bias"}, {"logits"});  // (B, T, V)
  auto* hn_concat = g.node("Concat", "hn", hn, {"hn"});  // (L, B, H)
  GraphBuilder::attribute(hn_concat, "axis", int64_t{0});
  if (facts.has_cell_state()) {
    auto* cn_concat = g.node("Concat", "cn", cn, {"cn"});
    GraphBuilder::attribute(cn_concat, "axis", int64_t{0});
  }

  const nlohmann::json config = to_json(checkpoint.config);
  add_metadata(model, "charrnn.format", kOnnxFormat);
  add_metadata(model, "charrnn.vocab", vocab_json(checkpoint.vocab));
  add_metadata(model, "charrnn.cell", to_string(o.cell));
  add_metadata(model, "charrnn.vocab_size", std::to_string(V));
  add_metadata(model, "charrnn.embedding_dim", std::to_string(o.embedding_dim));
  add_metadata(model, "charrnn.hidden_size", std::to_string(H));
  add_metadata(model, "charrnn.num_layers", std::to_string(L));
  add_metadata(model, "charrnn.sample", config.at("sample").dump());
  add_metadata(model, "charrnn.config", config.dump());
  add_metadata(model, "charrnn.version", CHARRNN_VERSION);
  add_metadata(model, "charrnn.trained_steps", std::to_string(checkpoint.progress.step));
  return model;
}

}  // namespace

bool onnx_export_available() { return true; }

void export_onnx(const Checkpoint& checkpoint, const std::string& path) {
  onnx::ModelProto model = build_model(checkpoint);
  try {
    onnx::checker::check_model(model);
    // strict: a node whose shapes do not infer is an error, as is an
    // inferred output that disagrees with the declared one
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1));
  } catch (const std::exception& e) {  // onnx::checker::ValidationError, onnx::InferenceError
    throw Error("export: the ONNX model fails onnx's checks (a charrnn bug): " + std::string(e.what()));
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("export: cannot serialize the ONNX model for " + path);
  ensure_parent_directory(path);
  write_file_atomically(path, bytes);
}

}  // namespace charrnn

#else  // no libonnx-dev at configure time

namespace charrnn {

bool onnx_export_available() { return false; }

void export_onnx(const Checkpoint&, const std::string&) {
  throw Error("this charrnn was built without ONNX support (install libonnx-dev)");
}

}  // namespace charrnn

#endif
