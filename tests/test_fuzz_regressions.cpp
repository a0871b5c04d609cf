// Regression tests for what the fuzzers (fuzz/, scripts/fuzz.sh) found: each
// crashing input, inline, byte for byte, with the behaviour it must have now.
// docs/robustness.md lists the findings and their fixes.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/error.h"
#include "charrnn/serve_api.h"
#include "charrnn/vocab.h"
#include "test_helpers.h"

namespace {

using charrnn_test::thrown_message;

template <size_t N>
std::string bytes(const char (&literal)[N]) {
  return std::string(literal, N - 1);  // the inputs hold NUL bytes
}

// The address space this process already uses, in bytes (0 if unknown).
rlim_t address_space_in_use() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmSize:") {
      rlim_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

// The body of the death test below: caps the address space at 1 GiB more
// than is in use, runs `f` and exits 0 when it throws charrnn::Error, 1 when
// it throws anything else or nothing.
[[noreturn]] void run_capped(const std::function<void()>& f) {
  const rlim_t limit = address_space_in_use() + (rlim_t{1} << 30);
  const rlimit capped{limit, limit};
  setrlimit(RLIMIT_AS, &capped);
  int status = 1;
  try {
    f();
  } catch (const charrnn::Error&) {
    status = 0;
  } catch (...) {
  }
  _exit(status);
}

// Runs `f` in a child process (a death test) whose address space may grow by
// only 1 GiB: an input that once made the library allocate 16 GiB or write
// far out of bounds then fails the test, instead of taking the machine's
// memory or the test binary down with it.
void expect_error_within_1gib(const std::function<void()>& f) {
  EXPECT_EXIT(run_capped(f), ::testing::ExitedWithCode(0), "");
}

// fuzz_utf8_vocab read its input as little-endian 32-bit code points.
std::u32string code_points(const std::string& input) {
  std::u32string out;
  for (size_t i = 0; i + 4 <= input.size(); i += 4) {
    uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) cp |= static_cast<uint32_t>(static_cast<unsigned char>(input[i + k])) << (8 * k);
    out.push_back(static_cast<char32_t>(cp));
  }
  return out;
}

// fuzz_utf8_vocab: Vocab::from_text sized its code-point histogram by the
// largest code point before checking it: U+808090F4 asked for 16 GiB, and
// U+FFFFFFFF wrapped `c + 1` to 0 and wrote 32 GiB past the histogram.
TEST(FuzzRegressions, VocabFromTextRejectsCodePointsBeyondUnicode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // LibTorch may have started threads
  const std::u32string huge = code_points(bytes("\xF4\x90\x80\x80"));  // the fuzzer's input
  ASSERT_EQ(huge.size(), 1u);
  ASSERT_EQ(static_cast<uint32_t>(huge[0]), 0x808090F4u);
  expect_error_within_1gib([&] { charrnn::Vocab::from_text(huge); });
  const std::u32string wrapping = code_points(bytes("\xFF\xFF\xFF\xFF"));
  expect_error_within_1gib([&] { charrnn::Vocab::from_text(wrapping); });
  // ordinary text still works, up to the last code point
  EXPECT_EQ(charrnn::Vocab::from_text(U"ab\U0010FFFF").size(), 3);
}

// fuzz_config: the input is JSON text, a NUL byte and --set lines. The JSON
// (configs/tiny.json, mutated) is invalid; the --set line gives sample.prime
// bytes that are not UTF-8. validate() let that pass, and every checkpoint
// save would then have failed in nlohmann's dump(), after training.
TEST(FuzzRegressions, SetValueThatIsNotUtf8IsAUsageError) {
  const std::string input = bytes(
    "{\n  \"data\":   { \"path\": \"data/moby-dick.txt\", \"val_fraction\": 0.1 },\n  \"model\":  { "
    "\"cell\": \"lstm\", \"embedding_dim\": 16, \"hidden_size\":2,\"3 \xDF\x91um_layers\": 1, \"dropo"
    "ut\": 0/0 },\n  \"train\":  { \"batch_size\": 8, \"seq_length\": 32, \"learning_rate\": 0.01, \""
    "steps\": 40,\n              \"max_seconds\": 0, \"grad_clip\": 5.0, \"eval_every\": 20, \"seed\""
    ": 42,\n              \"device\": \"auto\", \"checkpoint\": \"models/tiny.pt\" },\n  \"sample\": "
    "{ \"prime\": \"\", \"length\": 100, \"temperature\": 0.8, \"top_k\": 0, optimizer1.0, \"seed\": "
    "0 }\n}\n\x00model.hidden_size=8\ntrain.device=cpu\nsample.prime=caf\xC3" "DDDDDDDDDDDDDDDDDDDDDD"
    "DDDDDDDDDDDDD\xA9");
  const std::string json_text = input.substr(0, input.find('\0'));
  EXPECT_THROW(nlohmann::json::parse(json_text), nlohmann::json::parse_error);
  std::vector<std::string> assignments;
  size_t start = input.find('\0') + 1;
  while (start <= input.size()) {
    const size_t end = std::min(input.find('\n', start), input.size());
    assignments.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  ASSERT_EQ(assignments.size(), 3u);
  const charrnn::Config config = charrnn::apply_overrides(charrnn::Config{}, assignments);
  const std::string message =
      thrown_message<charrnn::UsageError>([&] { charrnn::validate(config, "--set sample.prime"); });
  EXPECT_CONTAINS(message, "sample.prime");
  EXPECT_CONTAINS(message, "UTF-8");
  // the other string keys are checked the same way
  for (const char* key : {"data.path", "train.device", "train.checkpoint"}) {
    const charrnn::Config bad = charrnn::apply_overrides(charrnn::Config{}, {std::string(key) + "=x\xFFy"});
    EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { charrnn::validate(bad); }), key);
  }
  // valid UTF-8 is untouched
  charrnn::validate(charrnn::apply_overrides(charrnn::Config{}, {"sample.prime=caf\xC3\xA9"}));
}

// fuzz_checkpoint, with the section checksums repaired (the mode that is now
// CHARRNN_FUZZ_ARCHIVES=1): a real checkpoint whose model archive has one
// byte of its TorchScript source changed. LibTorch compiles
// that source while loading and threw torch::jit::ErrorReport, which is not a
// c10::Error, so it escaped restore_model's catch (and charrnn's error type).
TEST(FuzzRegressions, ModelArchiveWithBrokenTorchScriptIsACheckpointError) {
  const std::string input = bytes(
    "CHARRNN\n\x01\x00\x00\x00q\x03\x00\x00\x00\x00\x00\x00{\"charrnn_version\":\"0.1.0\",\"config\":"
    "{\"data\":{\"cache\":true,\"path\":\"data/moby-dick.txt\",\"val_fraction\":0.1},\"model\":{\"cel"
    "l\":\"lstm\",\"dropout\":0.0,\"embedding_dim\":3,\"hidden_size\":4,\"num_layers\":1},\"sample\":"
    "{\"length\":500,\"prime\":\"h\xC3\xB6\",\"seed\":0,\"temperature\":0.8,\"top_k\":0,\"top_p\":1.0"
    "},\"train\":{\"batch_size\":32,\"checkpoint\":\"seed.pt\",\"device\":\"auto\",\"divergence_rollb"
    "acks\":0,\"eval_every\":200,\"eval_max_chars\":500000,\"grad_clip\":5.0,\"learning_rate\":0.002,"
    "\"max_seconds\":0.0,\"seed\":42,\"seq_length\":128,\"steps\":2000,\"threads\":0}},\"progress\":{"
    "\"best_step\":-1,\"best_val_loss\":null,\"chars_trained\":224,\"elapsed_seconds\":0.5,\"last_tra"
    "in_loss\":2.5,\"step\":7},\"sections\":[{\"crc32\":3886737817,\"name\":\"model\",\"size\":5986},"
    "{\"crc32\":0,\"name\":\"optimizer\",\"size\":0},{\"crc32\":0,\"name\":\"rng\",\"size\":0}],\"voc"
    "ab\":{\"code_points\":[32,33,100,101,104,108,111,114,119,246,128512],\"counts\":[2,1,1,1,1,3,1,1"
    ",1,1,1]}}\xB3P\xA7\x83PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x0E\x00\x14\x00" "archive/data/0FB\x10\x00ZZZZZZZZZZZZZZZZ\x85\x1B\x90"
    "\xBF\x8A\x80\x93\xBF\xD6K\x80\xBE]%\xDE\xBE\x15" "EY?\x83'1?m\xCC\xA1\xBE\xC1_\x07\xC0" "8\x01"
    "\xA5>\xF4\xB4\xA1\xBF\xFF" "0\xB3>\xBB\xC3\x9D>wo\xF5=\x93k\x9E?\x8E\xF2\x8E?|6}\xBE\xC2#\xAD"
    "\xBF" "dg\x01=(@\xFC\xBEp`~>\xD0\x1F\xE1>\xD6" "7\xE6=\xF8\n$?<\xDF\xE1>B\x0B]\xBE\x9C\xDDJ?SO"
    "\x94\xBE\x17\x12W=/\xDA\x05?UW\x13@\xB7\x04\xBC\xBF\x9E\x18\xCB\xBF<\x03\x9A?PK\x07\x08G\x90\x03"
    "\xA4\x84\x00\x00\x00\x84\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0E\x00@\x00" "archive/data/1FB<\x00ZZZZZZZZZZZZZZZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ \xCB\x93\xBC@\xBA\xA3>\x82\x7F\xFE>$4K>\xC8U\x8A=\xFE"
    "\xA4\xAB>\xC0\xBB\x96\xBE\xF8\xD0\xBE=lz\xC6\xBE\x18n\xB1\xBE\xD2>\x84\xBE\x8C\xAAg>\xF8\xE7M>j"
    "\xA4\x97\xBE\xC8\xAD\x1A>n\x89\x8C> ?\x81\xBD@d\x9C<\x00" "D\xED=\x00\xD1\x9E>H\xCF\xF5>\x96G"
    "\xC5\xBE\xEC\xA1;\xBE\x98" "8I>\xD0\x1B\xD4>\xE8\xC5\xDE>\"\xE2\xE1>x\xCA\xCB=\xF8\x9C\xDE\xBE"
    "\x90" "f<=\xAC'\xA0\xBE\x8C\x94\xEE\xBE>t\xE3>\xF0\xA6\xC2>\xFE]\xFF\xBE\x08\xAA\xBF=\xC8\x80"
    "\xAC\xBD\xB8\x82\xA8\xBD\x1C_j\xBE\x8C\xE4" "D>4\xA1\x97\xBE\xDC\xB1;>\x16v\x81>\\C\xB7>Hq?>J_"
    "\xFD\xBE\x00\x11\xA6\xBE" "8\xA6\x7F>PK\x07\x08\xDE\x8D\xC3W\xC0\x00\x00\x00\xC0\x00\x00\x00PK"
    "\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x0E\x00\x04\x00" "archive/data/2FB\x00\x00\x18S\xD6=\x96\xB3\xC7\xBE\xE8h\x93\xBE\xF2\xD4\xF0>T"
    "\x7F\xAC>\xB0>_\xBE\xD4\xDC\x00\xBEx\xDD\xF3\xBE\x80>\x13\xBCx\xC8\xC0\xBE\xA2w\xC5\xBE \xB0\xE1"
    "\xBC\xA0\xBF\x99=\xF4\xADQ\xBE\x98\xE7\x97>8\xC9\x9B\xBEhI\xE8>\xD0o\xAF>d\xE1\xD7\xBE\x88\xDB"
    "\xFE\xBD\x80\xD2\xB8<\x18g\x95=\xD0\xDD\xF2=\\\xECH>\xE0Y\xF5<\xCC\xD1y\xBE\xD4" "Er>V\x91\xF5"
    "\xBE\xA0\xBB\x97\xBE<+\x00\xBE\xEC" "fy\xBE\\\x1D" "3\xBE\xBA\xD2\xD1\xBE\x00\xD2\xD9\xBD\xF8"
    "\xE2\xDA=v\xC6\xA6\xBE@4\xD2\xBC\x00" "B\xB7>\xF0\x88R\xBD\x80\xAC" "c<\xC0\xAD" "0\xBD\x10=\xCF"
    "=`\xC6\xA2>\xBA~\xF2>\x06\x93\xA2>\xC4\x0C\xF3>`\x1D\x14\xBD" "f\xF8\xE5\xBE@\xBAr\xBE\xCEO\xAE>"
    "\x00kT\xBB\xDC|~\xBE\x02-\xC4\xBE\x00\x94\xEF\xBE\xEC\x10\xD8\xBEp\xB4\xCF\xBDVd\x8C>tg\x8A>\x02"
    "\xE5\xF6\xBE.\xB0\x9F>\x8AR\xC8\xBE\xF0{\xD8\xBD\x1C\x9AO\xBE\xF0<\xC5\xBDPK\x07\x08U\"\x8B\x88"
    "\x00\x01\x00\x00\x00\x01\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0E\x00\x04\x00" "archive/data/3FB\x00\x00\x10\x0E\xC9\xBD"
    "\xBA\xB8\xE5\xBE" "D\n\xDD\xBE(<\xA0\xBD\x80\xE1\xD3;\xB8\x96h\xBE\xB8\xDE@>:j\xE6\xBE\xC0" "6\n"
    "\xBD\xA2!\xE1>8\xD7P\xBE" "6+\xE7>8l9>\xAE\x07\xE7\xBEt\xF8\xA1>\xF0Sl\xBDPK\x07\x08" "E\xF6\xF3"
    "\xAE@\x00\x00\x00@\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x0E\x00\x04\x00" "archive/data/4FB\x00\x00p\x8F" "d\xBE\x14\xB6"
    "\xCC>T\xDF\xCE\xBE\xB0\xC2[=\xC0" "d\xD6\xBD\x16\xD0\xB6>\x08\xEC\x0E>\xCC\x04v>@\xD1" "4>\x00?"
    "\xF6\xBDPZ\xD7\xBD\x00\xF7\xD2\xBEL\xB6\x8A>&B\xCB>\\)\xAF>\xAC\x93\xB4\xBEPK\x07\x08\xD1\x9F"
    "\xDBy@\x00\x00\x00@\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0E\x00\x04\x00" "archive/data/5FB\x00\x00`\xAE\xB6<\x90v"
    "\xB4\xBE\x88\xEC\x8C\xBE" "0,\x95\xBE" "4\xF9.>\xC4\x8D\x98\xBE\x00\xBA" "2\xBC\xA0O\xAC<\x04"
    "\x06\xA5>\xFA\x83\xC1\xBE" "D\xBF\xAF\xBE<\xA6\x94\xBE\xD6.\xB3>\xCC\x0B" "8\xBE\xE0\xEE\xD7>"
    "\xA0$9>@\xAA\x81=\x00\xEDs\xBB\x08m\xCA\xBD@z\x80=0\xD3\xE9\xBD\x00>f\xBB\xC0\xA7\x82=\x98>\xC8"
    "\xBEz-\x86\xBE\xD8\xB7\xCE>\x86\xC1\xCF\xBE \x0F\x13\xBD\xC0>\xFD>\x10\xF4" "8>\xC0\xF0g<&\xDA"
    "\xDD\xBE,\xA2}>\x08X\xB6\xBE\xA8V\x11\xBE\xCC\xC8+\xBE" "8\xA4\x97\xBD\x80" "6\xB3;\x96&\xD3>"
    "\x80\xAB\x7F= L\xE5>0\x99\x9C>\xC6\xD8\xA1\xBET\xA2" "e>PK\x07\x08\x81\x83\xF7\x9A\xB0\x00\x00"
    "\x00\xB0\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x0E\x00\x14\x00" "archive/data/6FB\x10\x00ZZZZZZZZZZZZZZZZ$\xF7\xB4\xBE"
    "\x9C\xFFX\xBE@\x97\x16>\xF0\x0E)>\xF2\x0E\xC0>(\xD2$\xBE\x00\xD4Q:z\xCB\x83>Z\x93\xF7\xBE" "B"
    "\x15\xB9>0\xB1\xD3\xBEPK\x07\x08\x8B\xCA]$,\x00\x00\x00,\x00\x00\x00PK\x03\x04\x00\x00\x08\x08"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x16\x00" "archi"
    "ve/data.pklFB\x12\x00ZZZZZZZZZZZZZZZZZZ\x80\x02" "c__torch__\nModule\nq\x00)\x81}(X\t\x00\x00"
    "\x00" "embeddingq\x01" "c__torch__.___torch_mangle_0\nModule\nq\x02)\x81}(X\x06\x00\x00\x00weigh"
    "tq\x03" "ctorch._utils\n_rebuild_tensor_v2\nq\x04((X\x07\x00\x00\x00storageq\x05" "ctorch\nFloat"
    "Storage\nq\x06X\x01\x00\x00\x00" "0q\x07X\x03\x00\x00\x00" "cpuq\x08K!tQq\tK\x00(K\x0BK\x03t(K"
    "\x03K\x01t\x88" "ccollections\nOrderedDict\nq\n)RtRq\x0BubX\x03\x00\x00\x00rnnq\x0C" "c__torch__"
    ".___torch_mangle_1\nModule\nq\x0D)\x81}(X\x0C\x00\x00\x00weight_ih_l0q\x0Eh\x04((h\x05h\x06X\x01"
    "\x00\x00\x00" "1q\x0Fh\x08K0tQq\x10K\x00(K\x10K\x03t(K\x03K\x01t\x88h\n)RtRq\x11X\x0C\x00\x00"
    "\x00weight_hh_l0q\x12h\x04((h\x05h\x06X\x01\x00\x00\x00" "2q\x13h\x08K@tQq\x14K\x00(K\x10K\x04t("
    "K\x04K\x01t\x88h\n)RtRq\x15X\n\x00\x00\x00" "bias_ih_l0q\x16h\x04((h\x05h\x06X\x01\x00\x00\x00" "3"
    "q\x17h\x08K\x10tQq\x18K\x00(K\x10t(K\x01t\x88h\n)RtRq\x19X\n\x00\x00\x00" "bias_hh_l0q\x1Ah\x04("
    "(h\x05h\x06X\x01\x00\x00\x00" "4q\x1Bh\x08K\x10tQq\x1CK\x00(K\x10t(K\x01t\x88h\n)RtRq\x1DubX\x04"
    "\x00\x00\x00headq\x1E" "c__torch__.___torch_mangle_2\nModule\nq\x1F)\x81}(h\x03h\x04((h\x05h\x06"
    "X\x01\x00\x00\x00" "5q h\x08K,tQq!K\x00(K\x0BK\x04t(K\x04K\x01t\x88h\n)RtRq\"X\x04\x00\x00\x00" "b"
    "iasq#h\x04((h\x05h\x06X\x01\x00\x00\x00" "6q$h\x08K\x0BtQq%K\x00(K\x0Bt(K\x01t\x88h\n)RtRq&ububq"
    "'.PK\x07\x08\xD1\xFA" "c\xD2\xC9\x02\x00\x00\xC9\x02\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\x00" "0\x00" "archive/code/"
    "__torch__.pyFB,\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZclass Module(Module):\n  __parame"
    "ters__ = []\n  __buffers__ = []\n  embedding : __torch__.___torch_mangle_0.Module\n  rnn : __tor"
    "ch__.___torch_mangle_1.Module\n  head : __torch__.___torch_mangle_2.Module\nPK\x07\x08-\x14\xD2;"
    "\xC7\x00\x00\x00\xC7\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00#\x00(\x00" "archive/code/__torch__.py.debug_pklFB$\x00ZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\x80\x02X\x18\x00\x00\x00" "FORMAT_WITH_STRING_TABLEq\x00X\x00"
    "\x00\x00\x00q\x01\x85q\x02K\x00" "ctorch.jit._pickle\nbuild_intlist\nq\x03(](etRK\x00K\x00\x87q"
    "\x04K\x00K\x00\x87K\x00\x87\x85q\x05\x87.PK\x07\x08\xB1\xF1\xBD=j\x00\x00\x00j\x00\x00\x00PK\x03"
    "\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00+"
    "\x00=\x00" "archive/code/__torch__/___torch_mangle_0.pyFB9\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZclass Module(Module):\n  __parameters__ = [\"weight\", ]\n  __buffers__ ="
    " []\n  weight : Tensor\nPK\x07\x08\x96" "f\x15\x15[\x00\x00\x00[\x00\x00\x00PK\x03\x04\x00\x00"
    "\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" "5\x00" "B\x00" "a"
    "rchive/code/__torch__/___torch_mangle_0.py.debug_pklFB>\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZZZ\x80\x02X\x18\x00\x00\x00" "FORMAT_WITH_STRING_TABLEq\x00X\x00\x00\x00"
    "\x00q\x01\x85q\x02K\x00" "ctorch.jit._pickle\nbuild_intlist\nq\x03(](etRK\x00K\x00\x87q\x04K\x00"
    "K\x00\x87K\x00\x87\x85q\x05\x87.PK\x07\x08\xB1\xF1\xBD=j\x00\x00\x00j\x00\x00\x00PK\x03\x04\x14"
    "\x00\x08\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00+\x00=\x00" "a"
    "rchive/code/__torch__/___torch_mangle_1.pyFB9\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
    "ZZZZZZZZZZe\x8D;\n\x80" "0\x10" "D{O\xB1X)XX\x0B\x1E\xC1\xCENd\x89\xBA\x9A@\xFC\x90U\xBC\xBE\x18"
    "\x89\x91X-\xF3" "fy\xD3k\xC1\x0C\xD5:\x1C\x9A\x92\xE7\xA4" "E\x04\x80\xB8\t#f\xDA\xC9" "0\"\x94"
    "\xD0\xC4'\xA9I\xEE\xA8$\xEA<\xCE\xC0" "e\xE9r\xA7\x04\xFB\xD6&\xD7\xB5\xD6\xD8\x1D\xE3\xF8\xEAn"
    "\xF4" "5B\x01" "5-\xBC\x1A\xCF" "e\xC8\xFD\xC2\x8F\x06\xBF\x17PK\x07\x08\xDD\xBA\x1B\xFBk\x00"
    "\x00\x00\xD7\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00" "5\x00" "2\x00" "archive/code/__torch__/___torch_mangle_1.py.debug"
    "_pklFB.\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\x80\x02X\x18\x00\x00\x00" "FORMAT_WITH"
    "_STRING_TABLEq\x00X\x00\x00\x00\x00q\x01\x85q\x02K\x00" "ctorch.jit._pickle\nbuild_intlist\nq"
    "\x03(](etRK\x00K\x00\x87q\x04K\x00K\x00\x87K\x00\x87\x85q\x05\x87.PK\x07\x08\xB1\xF1\xBD=j\x00"
    "\x00\x00j\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00+\x00=\x00" "archive/code/__torch__/___torch_mangle_2.pyFB9\x00ZZZZZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZclass Module(Module):\n  __parameters__ = 4\"wei"
    "ght\", \"bias\", ]\n  __buffers__ = []\n  weight : Tensor\n  bias : Tensor\nPK\x07\x08\x80\x05"
    "\x02us\x00\x00\x00s\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00" "5\x00*\x00" "archive/code/__torch__/___torch_mangle_2.py."
    "debug_pklFB&\x00ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\x80\x02X\x18\x00\x00\x00" "FORMAT_WITH_ST"
    "RING_TABLEq\x00X\x00\x00\x00\x00q\x01\x85q\x02K\x00" "ctorch.jit._pickle\nbuild_intlist\nq\x03(]"
    "(etRK\x00K\x00\x87q\x04K\x00K\x00\x87K\x00\x87\x85q\x05\x87.PK\x07\x08\xB1\xF1\xBD=j\x00\x00\x00"
    "j\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x15\x00\x13\x00" "archive/constants.pklFB\x0F\x00ZZZZZZZZZZZZZZZ\x80\x02).PK"
    "\x07\x08m/\tW\x04\x00\x00\x00\x04\x00\x00\x00PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0F\x00?\x00" "archive/versionFB;\x00ZZZZZZZZZZ"
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ3\nPK\x07\x08\xD1\x9EgU\x02\x00\x00\x00\x02\x00"
    "\x00\x00PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00G\x90\x03\xA4\x84\x00\x00\x00"
    "\x84\x00\x00\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" "archi"
    "ve/data/0PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xDE\x8D\xC3W\xC0\x00\x00\x00"
    "\xC0\x00\x00\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xD4\x00\x00\x00" "archi"
    "ve/data/1PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00U\"\x8B\x88\x00\x01\x00\x00"
    "\x00\x01\x00\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x02\x00\x00" "archi"
    "ve/data/2PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00" "E\xF6\xF3\xAE@\x00\x00\x00"
    "@\x00\x00\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00P\x03\x00\x00" "archive/dat"
    "a/3PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xD1\x9F\xDBy@\x00\x00\x00@\x00\x00"
    "\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xD0\x03\x00\x00" "archive/data/4PK"
    "\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x81\x83\xF7\x9A\xB0\x00\x00\x00\xB0\x00"
    "\x00\x00\x0E\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00P\x04\x00\x00" "archive/data/5PK"
    "\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x8B\xCA]$,\x00\x00\x00,\x00\x00\x00\x0E"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00@\x05\x00\x00" "archive/data/6PK\x01\x02\x00"
    "\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xD1\xFA" "c\xD2\xC9\x02\x00\x00\xC9\x02\x00\x00\x10"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xBC\x05\x00\x00" "archive/data.pklPK\x01"
    "\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00-\x14\xD2;\xC7\x00\x00\x00\xC7\x00\x00\x00"
    "\x19\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xD9\x08\x00\x00" "archive/code/__torch_"
    "_.pyPK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xB1\xF1\xBD=j\x00\x00\x00j\x00"
    "\x00\x00#\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\n\x00\x00" "archive/code/__tor"
    "ch__.py.debug_pklPK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x96" "f\x15\x15[\x00"
    "\x00\x00[\x00\x00\x00+\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFA\n\x00\x00" "archi"
    "ve/code/__torch__/___torch_mangle_0.pyPK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00"
    "\xB1\xF1\xBD=j\x00\x00\x00j\x00\x00\x00" "5\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\xEB\x0B\x00\x00" "archive/code/__torch__/___torch_mangle_0.py.debug_pklPK\x01\x02\x00\x00\x14"
    "\x00\x08\x08\x08\x00\x00\x00\x00\x00\xDD\xBA\x1B\xFBk\x00\x00\x00\xD7\x00\x00\x00+\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFA\x0C\x00\x00" "archive/code/__torch__/___torch_mangl"
    "e_1.pyPK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xB1\xF1\xBD=j\x00\x00\x00j\x00"
    "\x00\x00" "5\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFB\x0D\x00\x00" "archive/code/"
    "__torch__/___torch_mangle_1.py.debug_pklPK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00"
    "\x00\x80\x05\x02us\x00\x00\x00s\x00\x00\x00+\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\xFA\x0E\x00\x00" "archive/code/__torch__/___torch_mangle_2.pyPK\x01\x02\x00\x00\x00\x00\x08\x08"
    "\x00\x00\x00\x00\x00\x00\xB1\xF1\xBD=j\x00\x00\x00j\x00\x00\x00" "5\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x03\x10\x00\x00" "archive/code/__torch__/___torch_mangle_2.py.debug_pkl"
    "PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00m/\tW\x04\x00\x00\x00\x04\x00\x00\x00"
    "\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFA\x10\x00\x00" "archive/constants.pkl"
    "PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\xD1\x9EgU\x02\x00\x00\x00\x02\x00\x00"
    "\x00\x0F\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00T\x11\x00\x00" "archive/versionPK"
    "\x06\x06,\x00\x00\x00\x00\x00\x00\x00\x1E\x03-\x00\x00\x00\x00\x00\x00\x00\x00\x00\x12\x00\x00"
    "\x00\x00\x00\x00\x00\x12\x00\x00\x00\x00\x00\x00\x00.\x05\x00\x00\x00\x00\x00\x00\xD2\x11\x00"
    "\x00\x00\x00\x00\x00PK\x06\x07\x00\x00\x00\x00\x00\x17\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00PK"
    "\x05\x06\x00\x00\x00\x00\x12\x00\x12\x00.\x05\x00\x00\xD2\x11\x00\x00\x00\x00");
  ASSERT_EQ(input.size(), 6891u);
  const charrnn::Checkpoint checkpoint = charrnn::parse_checkpoint(input, "fuzz.ckpt");
  const std::string message =
      thrown_message<charrnn::Error>([&] { charrnn::restore_model(checkpoint, torch::kCPU); });
  EXPECT_CONTAINS(message, "model weights cannot be loaded");
}

// fuzz_checkpoint (header checksum repaired; the sections after the header
// cut off, as the header alone triggers it): "counts": [..., 1e300, ...] in
// the stored vocabulary. nlohmann's get<int64_t>() static_casts the double,
// which is undefined behaviour (UBSan: 1e+300 is outside the range of 'long').
TEST(FuzzRegressions, StoredVocabularyWithAnOutOfRangeCountIsAnError) {
  const std::string input = bytes(
    "CHARRNN\n\x01\x00\x00\x00\x89\x03\x00\x00\x00\x00\x00\x00{\"charrnn_version\":\"0.1.0\",\"config"
    "\":{\"data\":{\"cache\":true,\"path\":\"data/moby-dick.txt\",\"val_fraction\":0.1},\"model\":{\""
    "cell\":\"lstm\",\"dropout\":0.0,\"embedding_dim\":3,\"hidden_size\":4,\"num_layers\":1},\"sample"
    "\":{\"length\":500,\"prime\":\"h\xC3\xB6\",\"seed\":0,\"temperature\":0.8,\"top_k\":0,\"top_p\":"
    "1.0},\"train\":{\"batch_size\":32,\"checkpoint\":\"seed.pt\",\"device\":\"auto\",\"divergence_ro"
    "llbacks\":0,\"eval_every\":200,\"eval_max_chars\":500000,\"grad_clip\":5.0,\"learning_rate\":0.0"
    "02,\"max_seconds\":0.0,\"seed\":42,\"seq_length\":128,\"steps\":2000,\"threads\":0}},\"progress"
    "\":{\"best_step\":-1,\"best_val_loss\":null,\"chars_trained\":224,\"elapsed_seconds\":0.5,\"last"
    "_train_loss\":2.5,\"step\":7},\"sections\":[{\"crc32\":1923286148,\"name\":\"model\",\"size\":59"
    "86},{\"crc32\":200490553,\"name\":\"optimizer\",\"size\":15270},{\"crc32\":4083184571,\"name\":"
    "\"rng\",\"size\":6598}],\"vocab\":{\"code_points\":[32,33,100,101,104,108,111,114,119,246,128512"
    "],\"counts\":[2,1,1,1,1,1e300,1,1,1]}}\xD5\x15\x1F\xC8");
  const std::string message = thrown_message<charrnn::Error>([&] { charrnn::parse_checkpoint(input, "fuzz.ckpt"); });
  EXPECT_CONTAINS(message, "vocabulary is malformed");
  EXPECT_CONTAINS(message, "1e+300");
}

// Not a fuzzer input: written by hand, and caught by fuzz_checkpoint's
// allocation limit (malloc(6400000000)): the seed LSTM's checkpoint with
// hidden_size 20000 in its header. restore_model built a model of that size
// (6.4 GB of weights, initialised) before looking at the 6 KB archive.
TEST(FuzzRegressions, HeaderClaimingAHugeModelIsAnErrorBeforeAllocating) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  torch::manual_seed(0);
  charrnn::Checkpoint checkpoint;
  checkpoint.config.model.cell = charrnn::CellType::LSTM;
  checkpoint.config.model.embedding_dim = 3;
  checkpoint.config.model.hidden_size = 4;
  checkpoint.config.model.num_layers = 1;
  checkpoint.vocab = charrnn::Vocab::from_text(U"hello world");
  checkpoint.model_bytes =
      charrnn::archive_module(*charrnn::CharRNN(checkpoint.vocab.size(), checkpoint.config.model));
  EXPECT_NO_THROW(charrnn::restore_model(checkpoint, torch::kCPU));  // the true sizes

  charrnn::Checkpoint huge = checkpoint;
  huge.config.model.hidden_size = 20000;
  expect_error_within_1gib([&] { charrnn::restore_model(huge, torch::kCPU); });
}


// fuzz_completion_request reads each body against this vocabulary, these
// limits and this sample section.
charrnn::CompletionRequest parse_request(std::string_view body, bool strict = false) {
  static const charrnn::Vocab vocab = charrnn::Vocab::from_text(U"hello world. bad cord-\n\u00E9\u2019");
  charrnn::ServeLimits limits;
  limits.max_tokens = 40;
  limits.max_prompt_chars = 5;
  limits.max_choices = 6;
  limits.strict_prompts = strict;
  charrnn::SampleOptions defaults;
  defaults.length = 100;
  return charrnn::parse_completion_request(body, vocab, limits, defaults);
}

// The ApiError a body is refused with (a failure if it is accepted).
charrnn::ApiError refusal(std::string_view body) {
  try {
    parse_request(body);
  } catch (const charrnn::ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return charrnn::ApiError(0, "");
}

// fuzz_completion_request: a body that is not JSON, cut inside a "\u"
// escape by bytes that are not UTF-8. nlohmann's parse error quotes the bytes
// where it stopped, so the 400's message held them, and error_body(e).dump()
// threw type_error.316: the server answered 500 instead.
TEST(FuzzRegressions, RequestWhoseParseErrorQuotesBytesThatAreNotUtf8GetsItsError) {
  const std::string input = bytes(
      "{\"prompt\": [\"e\xCC\xA2\", \"\xC2\xA0" "a\xE2\x80\x8B" "b\", \"\\r\\nd\xC2\xAD\", \"\\u20\xCF\xC6"
      "bad\\1e3u2019\"]}");
  for (const std::string& body : {input, bytes("{\"prompt\": \"caf\xC3\"}"), bytes("\xFF{}")}) {
    SCOPED_TRACE(body);
    const charrnn::ApiError e = refusal(body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "invalid_json");
    EXPECT_CONTAINS(e.what(), "not valid JSON");
    std::string sent;
    EXPECT_NO_THROW(sent = charrnn::error_body(e).dump());
    EXPECT_EQ(nlohmann::json::parse(sent)["error"]["message"], e.what());
  }
  EXPECT_CONTAINS(refusal(input).what(), "\xEF\xBF\xBD");  // U+FFFD where the bytes were
}

// fuzz_completion_request: a number beyond a double. nlohmann reports it as
// out_of_range.406, not as a parse_error, so it escaped the parser's catch
// as a json::exception (a 500), wherever it stood in the body.
TEST(FuzzRegressions, RequestWithANumberBeyondADoubleIsA400) {
  const std::string input = bytes("1e400{\"rrC\"e\xCC\xA2\", \"\xC2" "1d\\u2\"]}");
  for (const std::string& body : {input, std::string(R"({"prompt": "hello", "temperature": 1e400})"),
                                  std::string(R"({"prompt": "hello", "top_p": -1e999})")}) {
    SCOPED_TRACE(body);
    const charrnn::ApiError e = refusal(body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "invalid_json");
    EXPECT_CONTAINS(e.what(), "number overflow");
  }
}


// fuzz_completion_request, two inputs: the prompts' checks were made before
// folding, which drops some characters and lengthens others. A prompt of a
// lone combining mark (U+0322), which folding drops, reached the engine
// empty, whose submit threw (a 500); and "‘—olè", 5 characters as sent, was
// read as "’--ole", over the limit of 5 ("…" as "..." triples). On inputs
// written by hand, with UBSan: prompts x n overflowed int64 for a huge n.
TEST(FuzzRegressions, PromptsAreCheckedAfterFoldingAndNDoesNotOverflow) {
  const std::string input = bytes("{\"prompt\": [\"\xCC\xA2\", \"\xC2\xA0" "c\"]}");
  for (const std::string& body : {input, std::string("{\"prompt\": \"\xE2\x80\x8B\"}"),
                                  std::string("{\"prompt\": [\"hello\", \"\xC2\xAD\xEF\xBB\xBF\"]}")}) {
    SCOPED_TRACE(body);
    const charrnn::ApiError e = refusal(body);
    EXPECT_EQ(e.param, "prompt");
    EXPECT_CONTAINS(e.what(), "empty");
  }
  const std::string longer = bytes("{\"prompt\": [\"w\xE2\x80\xA6\", \"\\u2018\xE2\x80\x94ol\xC3\xA8\"]}");
  for (const std::string& body : {longer, std::string("{\"prompt\": \"\xE2\x80\xA6\xE2\x80\xA6\"}")}) {
    SCOPED_TRACE(body);
    const charrnn::ApiError e = refusal(body);
    EXPECT_EQ(e.param, "prompt");
    EXPECT_EQ(e.code, "prompt_too_long");
    EXPECT_CONTAINS(e.what(), "6 characters once");
  }
  EXPECT_EQ(parse_request("{\"prompt\": \"w\xE2\x80\xA6\"}").prompts[0], U"w...");
  EXPECT_EQ(parse_request("{\"prompt\": \"a\xE2\x80\x8B" "b\"}").prompts[0], U"ab");
  for (const char* n : {"9223372036854775807", "4611686018427387904", "4"}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(refusal(std::string(R"({"prompt": ["a", "b"], "n": )") + n + "}").param, "n");
  }
  EXPECT_EQ(parse_request(R"({"prompt": ["a", "b"], "n": 3})").n, 3);
}

// Not a finding: edges of the request the fuzzer went through. Integers past
// int64 name their field rather than wrap (max_tokens 2^64 - 1 is not -1),
// and a key given twice counts once, the last time, as nlohmann (and
// Python's json) read it.
TEST(FuzzRegressions, RequestEdgesTheFuzzerWentThrough) {
  for (const char* field : {"max_tokens", "top_k", "n"}) {
    for (const char* huge : {"18446744073709551615", "9223372036854775808"}) {
      const charrnn::ApiError e = refusal(std::string(R"({"prompt": "a", ")") + field + "\": " + huge + "}");
      EXPECT_EQ(e.param, field);
      EXPECT_CONTAINS(e.what(), "out of range");
    }
  }
  const charrnn::CompletionRequest r =
      parse_request(R"({"prompt": "a", "prompt": ["b", "c"], "n": 5, "n": 3, "stop": "x", "stop": null})");
  EXPECT_EQ(r.prompts, (std::vector<std::u32string>{U"b", U"c"}));
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_EQ(refusal(R"({"prompt": "a", "n": 1, "n": 0})").param, "n");
}

}  // namespace
