// SPDX-License-Identifier: Apache-2.0
// replay_main.cc: the main() of a fuzz target's plain (non-libFuzzer) build.
//
// Runs LLVMFuzzerTestOneInput once on every file named on the command line, or found (sorted by
// name) directly inside a directory named on the command line; arguments that do not exist are
// skipped, so a target without a crash directory still replays its corpus. Exits 0 after the last
// input, 1 when no input was found at all (a misnamed corpus must not pass as an empty one), and
// a failing property aborts (fuzz_support.h). This is how ctest replays the seed corpus and the
// saved crash inputs of every target with any compiler (tests/fuzz/CMakeLists.txt).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

bool runFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "replaying %s (%zu bytes)\n", path.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t count = 0;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
        if (entry.is_regular_file(ec)) {
          files.push_back(entry.path());
        }
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        ok = runFile(f) && ok;
        ++count;
      }
    } else if (std::filesystem::is_regular_file(arg, ec)) {
      ok = runFile(arg) && ok;
      ++count;
    }
  }
  std::printf("%zu inputs replayed\n", count);
  if (count == 0) {
    std::fprintf(stderr, "no input found in the arguments\n");
    return 1;
  }
  return ok ? 0 : 1;
}
