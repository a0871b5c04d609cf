// file_io: a whole file read; nothing is visible at the path before commit(), a writer that
// never commits leaves the old file and no temporary, a dead writer's
// temporary is cleaned up by the next one, and failures name the path.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "charrnn/file_io.h"
#include "charrnn/error.h"
#include "test_helpers.h"

namespace {

namespace fs = std::filesystem;
using charrnn_test::TempDir;
using charrnn_test::thrown_message;

size_t files_in(const std::string& folder) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++n;
  return n;
}

TEST(FileIo, NothingIsVisibleBeforeCommit) {
  TempDir dir;
  const std::string path = dir.file("model.pt");
  charrnn::write_file_atomically(path, "old");
  {
    charrnn::AtomicFileWriter writer(path);
    writer.write("new ", 4);
    writer.write("bytes", 5);
    EXPECT_EQ(charrnn::read_file(path), "old") << "the old file stays until commit";
    writer.commit();
  }
  EXPECT_EQ(charrnn::read_file(path), "new bytes");
  EXPECT_EQ(files_in(dir.path().string()), 1u) << "no temporary file is left";
}

TEST(FileIo, AWriterThatNeverCommitsLeavesTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("model.pt");
  charrnn::write_file_atomically(path, "old");
  {
    charrnn::AtomicFileWriter writer(path);
    writer.write("half", 4);
  }  // destroyed without commit(), as when an exception unwinds
  EXPECT_EQ(charrnn::read_file(path), "old");
  EXPECT_EQ(files_in(dir.path().string()), 1u);
}

TEST(FileIo, ADeadWritersTemporaryIsRemovedByTheNextWrite) {
  TempDir dir;
  const std::string path = dir.file("model.pt");
  // pid 0x7FFFFFF0 is above any pid Linux hands out: its writer is gone
  charrnn_test::write_file(dir.file("model.pt.tmp.2147483632"), "left by a kill");
  charrnn_test::write_file(dir.file("model.pt.tmp.notapid"), "not ours");
  charrnn::write_file_atomically(path, "fresh");
  EXPECT_EQ(charrnn::read_file(path), "fresh");
  EXPECT_FALSE(fs::exists(dir.file("model.pt.tmp.2147483632")));
  EXPECT_TRUE(fs::exists(dir.file("model.pt.tmp.notapid"))) << "only PATH.tmp.PID files are charrnn's";
}

TEST(FileIo, ReadFileReadsWholeFilesAndNamesWhatItCannot) {
  TempDir dir;
  const std::string bytes("a\0b\xFF", 4);
  charrnn_test::write_file(dir.file("f.bin"), bytes);
  EXPECT_EQ(charrnn::read_file(dir.file("f.bin")), bytes);
  EXPECT_NE(thrown_message<charrnn::Error>([&] { charrnn::read_file(dir.file("missing")); }).find("missing"),
            std::string::npos);
  EXPECT_NE(thrown_message<charrnn::Error>([&] { charrnn::read_file(dir.path().string()); }).find("is a directory"),
            std::string::npos);
}

TEST(FileIo, FoldersAreMadeAndFailuresNameThePath) {
  TempDir dir;
  const std::string nested = dir.file("a/b/c/model.pt");
  charrnn::ensure_parent_directory(nested);
  charrnn::write_file_atomically(nested, "x");
  EXPECT_EQ(charrnn::read_file(nested), "x");

  charrnn_test::write_file(dir.file("afile"), "x");
  const std::string under_a_file = dir.file("afile/sub/model.pt");
  EXPECT_NE(thrown_message<charrnn::Error>([&] { charrnn::ensure_parent_directory(under_a_file); }).find("afile"),
            std::string::npos);
  EXPECT_NE(thrown_message<charrnn::Error>([&] { charrnn::write_file_atomically(dir.file("afile/m.pt"), "x"); })
                .find("afile/m.pt"),
            std::string::npos);
}

}  // namespace
