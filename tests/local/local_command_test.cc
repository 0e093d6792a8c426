// `petrel local` as users run it: the built binary in a subprocess, bad inputs refused with
// nothing started, and the up / status / down lifecycle.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "local/files.h"
#include "local/process.h"
#include "local/store.h"
#include "tests/local/local_test_util.h"
#include "tests/local/petrel_run.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WaitFor;

struct CommandRun {
  int code = -1;
  std::string output;  // stdout and stderr
};

class LocalCommandTest : public ::testing::Test {
 protected:
  std::unique_ptr<Process> Start(const std::vector<std::string>& args, const std::string& log) {
    return testing::SpawnPetrel(dir_.path(), args, log);
  }
  CommandRun RunToEnd(const std::vector<std::string>& args) {
    std::string log = "run-" + std::to_string(++runs_) + ".log";
    auto p = Start(args, log);
    CommandRun r;
    if (!p) return r;
    std::optional<ExitStatus> exit;
    WaitFor([&] { return (exit = p->Poll()).has_value(); }, std::chrono::seconds(60));
    if (!exit) exit = p->Terminate(std::chrono::seconds(1));
    r.code = exit->code;
    r.output = ReadFile(dir_.path() / log).value_or("");
    return r;
  }
  fs::path Write(const std::string& name, const std::string& text) {
    fs::path p = dir_.path() / name;
    std::ofstream(p) << text;
    return p;
  }
  std::string State() const { return (dir_.path() / "state").string(); }

  TempDir dir_;
  std::string block_ = testing::RandomLoopbackBlock();
  int runs_ = 0;
};

constexpr const char* kSecretOnly = R"(apiVersion: v1
kind: Secret
metadata:
  name: app
stringData:
  password: hunter2
)";

TEST_F(LocalCommandTest, InvalidManifestNamesFileDocumentAndFieldAndStartsNothing) {
  fs::path f = Write("bad.yaml", std::string(kSecretOnly) +
                                     "---\napiVersion: apps/v1\nkind: Deployment\n"
                                     "metadata: {name: web}\n---\nkind: Secret\n");
  CommandRun r = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State(), "--address-block",
                    block_});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("bad.yaml: document 2: kind"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bad.yaml: document 3: apiVersion: is required"), std::string::npos);
  EXPECT_NE(r.output.find("nothing was started"), std::string::npos);
  EXPECT_FALSE(fs::exists(State()));
}

TEST_F(LocalCommandTest, InvalidClusterSpecIsReportedWithItsField) {
  fs::path f = Write("db.yaml", R"(apiVersion: petrel.dev/v1alpha1
kind: PostgresCluster
metadata: {name: db}
spec: {replicas: 0, image: "ghcr.io/petrel-dev/postgres:15.4", storage: {size: 1Gi}}
)");
  CommandRun r = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("db.yaml: document 1: spec.replicas"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(State()));
}

TEST_F(LocalCommandTest, YamlSyntaxErrorsGiveTheLine) {
  fs::path f = Write("syntax.yaml", "apiVersion: v1\nkind: [Secret\n");
  CommandRun r = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("syntax.yaml: YAML syntax error at line"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(State()));
}

TEST_F(LocalCommandTest, MissingPostgresBinariesAreReportedBeforeStarting) {
  fs::path f = Write("db.yaml", R"(apiVersion: petrel.dev/v1alpha1
kind: PostgresCluster
metadata: {name: db}
spec: {replicas: 1, image: "ghcr.io/petrel-dev/postgres:15.4", storage: {size: 1Gi}}
)");
  fs::path empty_root = dir_.path() / "no-postgres";
  fs::create_directories(empty_root);
  CommandRun r = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State(), "--postgres-root",
                    empty_root.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("needs PostgreSQL 15"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("postgresql-15"), std::string::npos);
  EXPECT_FALSE(fs::exists(State()));
}

TEST_F(LocalCommandTest, PortInUseIsReportedWithTheAddressAndNothingStarts) {
  std::string first_pod_ip = testing::BlockPrefix(block_) + "1";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(5432);
  inet_pton(AF_INET, first_pod_ip.c_str(), &addr.sin_addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  fs::path f = Write("ok.yaml", kSecretOnly);
  CommandRun r = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State(), "--address-block",
                    block_});
  ::close(fd);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find(first_pod_ip + ":5432 is already in use"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(fs::path(State()) / "store.json"));
  EXPECT_FALSE(fs::exists(fs::path(State()) / "local.json"));
}

TEST_F(LocalCommandTest, UpStatusDownLifecycleAndStateDirectoryInUse) {
  fs::path f = Write("ok.yaml", kSecretOnly);
  auto up = Start({"local", "up", "-f", f.string(), "--state-dir", State(), "--address-block",
                   block_},
                  "up.log");
  ASSERT_TRUE(up);
  ASSERT_TRUE(WaitFor([&] {
    return fs::exists(fs::path(State()) / "local.json") ||
           up->Poll().has_value();
  })) << ReadFile(dir_.path() / "up.log").value_or("");
  ASSERT_FALSE(up->Poll().has_value()) << ReadFile(dir_.path() / "up.log").value_or("");

  // The Secret is applied and materialised as a private file.
  ASSERT_TRUE(WaitFor([&] {
    return ReadFile(fs::path(State()) / "secrets" / "default" / "app" / "password").ok();
  }));
  EXPECT_EQ(ReadFile(fs::path(State()) / "secrets" / "default" / "app" / "password").value(),
            "hunter2");

  CommandRun second = RunToEnd({"local", "up", "-f", f.string(), "--state-dir", State()});
  EXPECT_EQ(second.code, 1);
  EXPECT_NE(second.output.find("in use by another petrel local (pid " + std::to_string(up->pid())),
            std::string::npos)
      << second.output;

  CommandRun same_block = RunToEnd({"local", "up", "-f", f.string(), "--state-dir",
                             (dir_.path() / "other").string(), "--address-block", block_});
  EXPECT_EQ(same_block.code, 1);
  EXPECT_NE(same_block.output.find("address block"), std::string::npos) << same_block.output;
  EXPECT_NE(same_block.output.find("pid " + std::to_string(up->pid())), std::string::npos);

  CommandRun status = RunToEnd({"local", "status", "--state-dir", State()});
  EXPECT_EQ(status.code, 0) << status.output;
  EXPECT_NE(status.output.find("no PostgresClusters"), std::string::npos) << status.output;

  CommandRun down = RunToEnd({"local", "down", "--state-dir", State(), "--delete-data"});
  EXPECT_EQ(down.code, 0) << down.output;
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(WaitFor([&] { return (exit = up->Poll()).has_value(); }));
  EXPECT_EQ(exit->code, 0) << ReadFile(dir_.path() / "up.log").value_or("");
  EXPECT_FALSE(fs::exists(State()));

  CommandRun after = RunToEnd({"local", "status", "--state-dir", State()});
  EXPECT_EQ(after.code, 1);
  EXPECT_NE(after.output.find("no petrel local is running"), std::string::npos);
}

TEST_F(LocalCommandTest, SigtermStopsCleanlyAndKeepsData) {
  fs::path f = Write("ok.yaml", kSecretOnly);
  auto up = Start({"local", "up", "-f", f.string(), "--state-dir", State(), "--address-block",
                   block_},
                  "up.log");
  ASSERT_TRUE(up);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(fs::path(State()) / "local.json"); }));
  ::kill(up->pid(), SIGTERM);
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(WaitFor([&] { return (exit = up->Poll()).has_value(); }));
  EXPECT_EQ(exit->code, 0);
  auto store = LocalStore::Open({State()});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->Get(resources::kSecret, {"default", "app"}).ok());
}

}  // namespace
}  // namespace petrel
