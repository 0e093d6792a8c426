// Runs the real `petrel` binary as a kubectl plugin for tests: a temp directory on PATH holds
// the `kubectl-petrel` symlink (and, when asked, a psql that records its arguments and
// PGPASSWORD), and commands go through the real kubectl 1.20 of the envtest assets, so kubectl's
// plugin discovery is part of every test. Also installs Petrel's CRDs once per binary.
// Thread-safety: test-main-thread only.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/types.h"
#include "tests/support/envtest.h"

namespace petrel {

enum class FakePsql { kNo, kYes };

namespace fs = std::filesystem;

struct PluginRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class PluginFixture : public EnvtestTest {
 protected:
  // Installs the CRDs and builds the PATH directory; `psql` picks a recording fake or the real one.
  static void SetUpPlugin(FakePsql psql_kind) {
    auto env = Envtest::Shared();
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    const char* source = std::getenv("PETREL_SOURCE_DIR");
    const char* binary = std::getenv("PETREL_BINARY");
    ASSERT_NE(source, nullptr);
    ASSERT_NE(binary, nullptr);
    for (const std::string& crd : {std::string(source) + "/crds/postgresattachment.yaml",
                                   std::string(source) + "/crds/postgrescluster.yaml"}) {
      auto r = (*env)->Kubectl({"apply", "-f", crd});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    auto r =
        (*env)->Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                         "crd/postgresclusters.petrel.dev", "crd/postgresattachments.petrel.dev"});
    ASSERT_EQ(r.exit_code, 0) << r.err;

    bin_dir_ = new fs::path(
        (*env)->Dir() + (psql_kind == FakePsql::kYes ? "/plugin-bin-fake-psql" : "/plugin-bin"));
    fs::create_directories(*bin_dir_);
    fs::create_symlink(binary, *bin_dir_ / "kubectl-petrel");
    if (psql_kind == FakePsql::kNo) return;
    // A psql that records how it was called, so connect is checked without a server.
    std::ofstream psql(*bin_dir_ / "psql");
    psql << "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$PSQL_RECORD.argv\"\n"
            "printf '%s' \"$PGPASSWORD\" > \"$PSQL_RECORD.password\"\n";
    psql.close();
    fs::permissions(*bin_dir_ / "psql", fs::perms::owner_all);
  }

  // `kubectl petrel <args>` with the admin kubeconfig in $KUBECONFIG, `input` on stdin.
  PluginRun Petrel(const std::vector<std::string>& args, const std::string& input = "",
                   const std::string& extra_env = "") {
    static int counter = 0;
    std::string base = env().Dir() + "/plugin-run-" + std::to_string(++counter);
    std::string cmd = "cd " + ShellQuote(env().Dir()) + " && env PATH=" +
                      ShellQuote(bin_dir_->string() + ":" + env().AssetsDir() + ":/usr/bin:/bin") +
                      " KUBECONFIG=" + ShellQuote(env().KubeconfigPath()) + " " + extra_env +
                      " timeout 60 kubectl petrel";
    for (const auto& a : args) cmd += " " + ShellQuote(a);
    std::ofstream(base + ".in") << input;
    cmd += " <" + ShellQuote(base + ".in") + " >" + ShellQuote(base + ".out") + " 2>" +
           ShellQuote(base + ".err");
    int status = std::system(cmd.c_str());
    PluginRun run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadFile(base + ".out");
    run.err = ReadFile(base + ".err");
    return run;
  }

  Json MakeCluster(const std::string& name) {
    Json cluster = {{"apiVersion", "petrel.dev/v1alpha1"},
                    {"kind", "PostgresCluster"},
                    {"metadata", {{"name", name}, {"namespace", ns_}}},
                    {"spec",
                     {{"replicas", 2},
                      {"image", "ghcr.io/petrel-dev/postgres:15.4"},
                      {"storage", {{"size", "1Gi"}}}}}};
    auto created = client().Create(resources::kPostgresCluster, cluster);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    Json with_status = *created;
    with_status["status"] = Json::parse(R"({
      "observedGeneration": 1, "phase": "Degraded", "phaseReason": "ReplicaNotStreaming",
      "replicas": 2, "readyReplicas": 1, "currentPrimary": "REPLACE-1",
      "image": "ghcr.io/petrel-dev/postgres:15.4", "postgresMajorVersion": 15,
      "conditions": [{"type": "Ready", "status": "False", "reason": "InstanceNotReady",
        "message": "one replica is not streaming", "lastTransitionTime": "2026-11-24T00:00:00Z"}],
      "instances": [
        {"name": "REPLACE-1", "role": "primary", "ready": true, "phase": "Running", "timeline": 1},
        {"name": "REPLACE-2", "role": "replica", "ready": false, "phase": "Starting",
         "timeline": 1, "lagBytes": 4096}]})");
    with_status["status"]["currentPrimary"] = name + "-1";
    with_status["status"]["instances"][0]["name"] = name + "-1";
    with_status["status"]["instances"][1]["name"] = name + "-2";
    auto updated = client().UpdateStatus(resources::kPostgresCluster, with_status);
    EXPECT_TRUE(updated.ok()) << updated.status().ToString();
    return updated.ok() ? *updated : Json();
  }

  void MakeService(const std::string& name, const std::string& local_address) {
    Json svc = {{"apiVersion", "v1"},
                {"kind", "Service"},
                {"metadata",
                 {{"name", name},
                  {"namespace", ns_},
                  {"annotations", {{"petrel.dev/local-address", local_address}}}}},
                {"spec", {{"ports", {{{"port", 5432}}}}}}};
    auto created = client().Create(resources::kService, svc);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
  }

  void MakeSecret(const std::string& name, const Json& string_data) {
    Json secret = {{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"metadata", {{"name", name}, {"namespace", ns_}}},
                   {"stringData", string_data}};
    auto created = client().Create(resources::kSecret, secret);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
  }

  static inline fs::path* bin_dir_ = nullptr;
};

}  // namespace petrel
