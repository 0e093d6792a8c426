// Helpers for tests that run the petrel binary as a user would: spawn it with a minimal
// environment inside the test's directory, and read what a running `petrel local` reports.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/object.h"
#include "local/files.h"
#include "local/process.h"
#include "net/http.h"

namespace petrel::testing {

// The binary under test (ctest sets PETREL_BINARY).
inline std::string PetrelBinary() {
  const char* binary = std::getenv("PETREL_BINARY");
  return binary ? binary : "petrel";
}

// `argv` to run in `dir`, output appended to dir/log. HOME and TMPDIR point into `dir`: the
// address-block locks stay inside the test's directory.
inline SpawnSpec SpecIn(const std::filesystem::path& dir, std::vector<std::string> argv,
                        const std::string& log) {
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", dir.string()}, {"TMPDIR", dir.string()}};
  spec.working_dir = dir.string();
  spec.log_file = (dir / log).string();
  return spec;
}

// `petrel <args>` run in `dir`; null (and a test failure) when it cannot be started.
inline std::unique_ptr<Process> SpawnPetrel(const std::filesystem::path& dir,
                                            const std::vector<std::string>& args,
                                            const std::string& log) {
  std::vector<std::string> argv = {PetrelBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::Spawn(SpecIn(dir, std::move(argv), log));
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : nullptr;
}

// The runtime file a running `petrel local` writes in its state directory, or null.
inline Json LocalRuntime(const std::filesystem::path& state_dir) {
  auto runtime = ReadFile(state_dir / "local.json");
  if (!runtime.ok()) return nullptr;
  Json r = Json::parse(*runtime, nullptr, false);
  return r.is_discarded() ? Json(nullptr) : r;
}

// The clusters a running `petrel local` reports (GET /status of its API); empty when it does
// not answer.
inline Json LocalClusters(const std::filesystem::path& state_dir) {
  Json r = LocalRuntime(state_dir);
  if (!r.is_object()) return Json::array();
  auto response = HttpCall("GET", r.value("api", "") + "/status");
  if (!response.ok() || response->status != 200) return Json::array();
  Json status = Json::parse(response->body, nullptr, false);
  if (status.is_discarded()) return Json::array();
  return status.value("clusters", Json::array());
}

// The first (usually only) cluster it reports, or null.
inline Json FirstLocalCluster(const std::filesystem::path& state_dir) {
  Json clusters = LocalClusters(state_dir);
  return clusters.empty() ? Json(nullptr) : clusters[0];
}

}  // namespace petrel::testing
