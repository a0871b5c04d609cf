// Loads a model through the installed charrnn package and prints a sample:
//   consumer MODEL PRIME LENGTH
#include <cstdlib>
#include <iostream>

#include <charrnn/charrnn.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: consumer MODEL PRIME LENGTH\n";
    return 2;
  }
  try {
    charrnn::TextGenerator model(argv[1], "cpu");
    charrnn::GenerateOptions options;
    options.prime = argv[2];
    options.length = std::atoll(argv[3]);
    options.sampling.temperature = 0;  // greedy: comparable with `charrnn generate --temperature 0`
    std::cout << model.generate(options) << "\n";
  } catch (const charrnn::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
