// Helpers shared by the local/ tests: temporary directories, random loopback blocks (so
// parallel tests never collide), and bounded waits.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>

namespace petrel::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "petrel-local-test") {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// "127.<a>.<b>.0/24" with random a, b (a >= 100 keeps clear of commonly used 127.0.x.x).
inline std::string RandomLoopbackBlock() {
  std::random_device rd;
  return "127." + std::to_string(100 + rd() % 150) + "." + std::to_string(1 + rd() % 250) +
         ".0/24";
}

// The network part "127.a.b." of such a block.
inline std::string BlockPrefix(const std::string& block) {
  return block.substr(0, block.rfind('.') + 1);
}

// Polls `condition` every 50 ms until it holds or `timeout` passes.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

}  // namespace petrel::testing
