#include "charrnn/charrnn.h"

#include "charrnn/export.h"
#include "charrnn/runtime.h"

namespace charrnn {

TextGenerator::TextGenerator(const std::string& model_path, const std::string& device)
    : checkpoint_(load_model_file(model_path)), device_(resolve_device(device)) {
  model_ = restore_model(checkpoint_, device_);
}

std::string TextGenerator::generate(const GenerateOptions& options, const TextCallback& on_text) {
  GenerateOptions one = options;
  one.num_samples = 1;
  one.collect = true;
  return charrnn::generate(model_, checkpoint_.vocab, one, device_, on_text).front();
}

std::vector<std::string> TextGenerator::generate_samples(const GenerateOptions& options, const TextCallback& on_text) {
  return charrnn::generate(model_, checkpoint_.vocab, options, device_, on_text);
}

}  // namespace charrnn
