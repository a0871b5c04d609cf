// Fine-tuning (charrnn train --init-from): a trained model's weights carried
// over to a vocabulary that may hold more characters.
//
// Shape legend: V vocabulary, E embedding, H hidden.
#pragma once

#include <string>

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/model.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// A fine-tune whose config names no train.learning_rate of its own trains
/// at the config's rate (and min_lr) divided by this. Measured on a 20 KB
/// text from a base trained with configs/default.json's recipe: at 1/16 of
/// that recipe's rate the best checkpoint scored better on the new text's
/// held-out part and kept more of the base's text than at its full rate or
/// a quarter of it (docs/performance.md, "Fine-tuning").
inline constexpr double kFineTuneRateDivisor = 16;
/// `train` with its rate and min_lr divided by kFineTuneRateDivisor.
TrainOptions fine_tune_rate(TrainOptions train);

/// The characters of `extended` that `base` lacks, as UTF-8, in order.
std::string added_characters(const Vocab& base, const Vocab& extended);

/// A copy of `model` (trained with `base`) for the vocabulary `extended`,
/// which holds every character of `base`. Old characters keep their
/// embedding and output rows, so on text of old characters only the old
/// characters' logits are exactly what they were. A new character's
/// embedding is the mean of the old ones (a typical input, not an outlier),
/// and its output row has zero weights and a bias far below the old ones,
/// so that it starts with a negligible probability and is learnt from its
/// first occurrences. `options` may change what shapes do not depend on
/// (dropout); the copy lives on `model`'s device.
CharRNN extend_vocabulary(const CharRNN& model, const Vocab& base, const Vocab& extended,
                          const ModelOptions& options);

/// What a model fine-tuned from `base` (read from `base_path`) onto a text
/// whose vocabulary is `extended` descends from, nearest first.
std::vector<ModelOrigin> fine_tuned_lineage(const Checkpoint& base, const std::string& base_path,
                                            const Vocab& extended);

/// Throws UsageError when `config` cannot fine-tune `base` (read from
/// `base_path`): another model shape, a path that is not UTF-8, or a
/// train.checkpoint that would overwrite the base.
void require_fine_tunable(const Checkpoint& base, const std::string& base_path, const Config& config);

}  // namespace charrnn
