#include "charrnn/fine_tune.h"

#include <cmath>
#include <filesystem>

#include "charrnn/corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

TrainOptions fine_tune_rate(TrainOptions train) {
  train.learning_rate /= kFineTuneRateDivisor;
  train.min_lr /= kFineTuneRateDivisor;
  return train;
}

std::string added_characters(const Vocab& base, const Vocab& extended) {
  std::string added;
  for (char32_t c : extended.chars())
    if (!base.contains(c)) append_utf8(added, c);
  return added;
}

CharRNN extend_vocabulary(const CharRNN& model, const Vocab& base, const Vocab& extended,
                          const ModelOptions& options) {
  if (model->vocab_size() != base.size())
    throw Error("fine-tuning: the model has " + std::to_string(model->vocab_size()) + " output rows for " +
                std::to_string(base.size()) + " characters");
  for (char32_t c : base.chars())
    if (!extended.contains(c)) throw Error("fine-tuning: the new vocabulary lacks " + describe_char(c));

  CharRNN grown(extended.size(), options);
  const torch::Device device = model->parameters().front().device();
  grown->to(device);
  torch::NoGradGuard no_grad;
  // where each old character's row goes
  std::vector<int64_t> rows(static_cast<size_t>(base.size()));
  for (int64_t id = 0; id < base.size(); ++id) rows[static_cast<size_t>(id)] = extended.id_or_negative(base.char_at(id));
  const torch::Tensor old_rows = torch::tensor(rows, torch::kLong).to(device);
  const bool grows = extended.size() > base.size();

  const auto old_parameters = model->named_parameters();
  for (auto& item : grown->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& target = item.value();
    const torch::Tensor& source = old_parameters[name];
    if (name == "embedding.weight") {  // (V, E)
      target.copy_(source.mean(0, /*keepdim=*/true).expand_as(target));
      target.index_copy_(0, old_rows, source);
    } else if (name == "head.weight") {  // (V, H)
      target.zero_();
      target.index_copy_(0, old_rows, source);
    } else if (name == "head.bias") {  // (V)
      // e^-12 below the least likely old character's bias: about 6e-6 of
      // its probability, so the old characters' distribution is all but untouched
      target.fill_(grows ? source.min().item<double>() - 12.0 : 0.0);
      target.index_copy_(0, old_rows, source);
    } else {
      target.copy_(source);
    }
  }
  return grown;
}

std::vector<ModelOrigin> fine_tuned_lineage(const Checkpoint& base, const std::string& base_path,
                                            const Vocab& extended) {
  ModelOrigin origin;
  origin.checkpoint = base_path;
  origin.step = base.progress.step;
  origin.chars_trained = base.progress.chars_trained;
  origin.best_val_loss = base.progress.best_val_loss;
  origin.data = describe_paths(base.config.data.path);
  origin.added_chars = added_characters(base.vocab, extended);
  std::vector<ModelOrigin> lineage = {std::move(origin)};
  lineage.insert(lineage.end(), base.lineage.begin(), base.lineage.end());
  return lineage;
}

void require_fine_tunable(const Checkpoint& base, const std::string& base_path, const Config& config) {
  require_same_model_shape(base.config.model, config.model, "--init-from");
  if (!is_valid_utf8(base_path))
    throw UsageError("--init-from: the path must be UTF-8 text (the new checkpoint records it as JSON)");
  std::error_code ec;
  if (std::filesystem::equivalent(base_path, config.train.checkpoint, ec))
    throw UsageError("--init-from: train.checkpoint is " + config.train.checkpoint +
                     ", the model being fine-tuned, which the new run would overwrite; set train.checkpoint to "
                     "another file");
}

}  // namespace charrnn
