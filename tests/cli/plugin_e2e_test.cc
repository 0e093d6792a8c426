// The kubectl plugin against a real PostgreSQL 15 as well as a real kube-apiserver: with the
// superuser Secret readable and the primary's Service at a loopback address (local mode),
// `users list` / `db list` read the live catalog, and `connect` runs the real psql.
//
// Then the same commands as `petrel <command>` against a running `petrel local` (a 2-instance
// cluster with an attachment): status with roles and checks, users/db list from live SQL,
// logs with Postgres's own output, a switchover to a named replica, and real kubectl on the
// kubeconfig petrel local writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "api/attachment.h"
#include "pg/attach_sql.h"
#include "pg/conn.h"
#include "local/process.h"
#include "tests/cli/plugin_fixture.h"
#include "tests/local/local_test_util.h"
#include "tests/pg/postgres_server.h"

namespace petrel {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

class PluginE2e : public PluginFixture {
 protected:
  static void SetUpTestSuite() { SetUpPlugin(FakePsql::kNo); }

  void SetUp() override {
    PluginFixture::SetUp();
    ASSERT_EQ(pg_.Start(kPassword), "");
    MakeCluster("db");
    MakeService("db-rw", "127.0.0.1:" + std::to_string(pg_.port()));
    MakeSecret("db-superuser", {{"username", "postgres"}, {"password", kPassword}});
  }

  static constexpr const char* kPassword = "pl'ugin-Sup3r\"secret";
  testing_pg::PostgresServer pg_;
};

TEST_F(PluginE2e, UsersAndDatabasesComeFromTheLiveCatalogJoinedWithAttachments) {
  // A role made the way the attachment reconciler makes it (with Petrel's marker) and one
  // created by hand.
  auto conn = PgConn::Connect(pg_.SuperuserConnInfo(), pg_.password());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(
      attach_sql::CreateRole(*conn, "web", "web-password", -1, RoleMarker({ns_, "web"})).ok());
  ASSERT_TRUE(attach_sql::CreateDatabase(*conn, "web", "web").ok());
  ASSERT_TRUE(conn->Exec("CREATE ROLE legacy LOGIN").ok());
  Json attachment = {{"apiVersion", "petrel.dev/v1alpha1"},
                     {"kind", "PostgresAttachment"},
                     {"metadata", {{"name", "web"}, {"namespace", ns_}}},
                     {"spec", {{"clusterRef", {{"name", "db"}}}}}};
  ASSERT_TRUE(client().Create(resources::kPostgresAttachment, attachment).ok());

  PluginRun users = Petrel({"users", "list", "db", "-n", ns_});
  ASSERT_EQ(users.exit_code, 0) << users.err;
  EXPECT_THAT(users.out, ContainsRegex("web +attachment " + ns_ + "/web +web +owner"));
  EXPECT_THAT(users.out, ContainsRegex("legacy +unmanaged"));
  EXPECT_THAT(users.out, ContainsRegex("postgres +petrel .*superuser"));
  EXPECT_THAT(users.out, HasSubstr("source: live SQL on 127.0.0.1:" + std::to_string(pg_.port())));
  EXPECT_THAT(users.out + users.err, Not(HasSubstr("Sup3r")));

  PluginRun dbs = Petrel({"db", "list", "db", "-n", ns_, "-o", "json"});
  ASSERT_EQ(dbs.exit_code, 0) << dbs.err;
  Json doc = Json::parse(dbs.out);
  EXPECT_EQ(doc["source"], "live");
  bool web = false;
  for (const auto& d : doc["databases"]) {
    if (d["name"] == "web") {
      web = true;
      EXPECT_EQ(d["ownerRole"], "web");
      EXPECT_EQ(d["ownedBy"], "attachment " + ns_ + "/web");
      EXPECT_GT(d["sizeBytes"].get<int64_t>(), 0);
    }
  }
  EXPECT_TRUE(web) << dbs.out;
}

TEST_F(PluginE2e, ConnectRunsPsqlOnThePrimaryWithThePasswordFromTheSecret) {
  PluginRun run = Petrel({"connect", "db", "-n", ns_, "--database", "postgres"},
                         "SELECT 'pong-' || current_user;\n");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("pong-postgres"));
  EXPECT_THAT(run.out + run.err, Not(HasSubstr("Sup3r")));
}

// ---- petrel local --------------------------------------------------------------------------

constexpr const char* kLocalManifest = R"(apiVersion: petrel.dev/v1alpha1
kind: PostgresCluster
metadata: {name: db, namespace: default}
spec: {replicas: 2, image: "ghcr.io/petrel-dev/postgres:15.4", storage: {size: 1Gi}}
---
apiVersion: petrel.dev/v1alpha1
kind: PostgresAttachment
metadata: {name: web, namespace: default}
spec: {clusterRef: {name: db}}
)";

// One `petrel local up` for the whole suite (starting Postgres twice is the slow part).
class PluginLocalE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("plugin-local-e2e");
    std::ofstream(dir_->path() / "db.yaml") << kLocalManifest;
    SpawnSpec spec;
    spec.argv = {std::getenv("PETREL_BINARY"), "local", "up", "-f",
                 (dir_->path() / "db.yaml").string(), "--state-dir", State(),
                 "--address-block", testing::RandomLoopbackBlock()};
    spec.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", dir_->path().string()},
                {"TMPDIR", dir_->path().string()}};
    spec.working_dir = dir_->path().string();
    spec.log_file = (dir_->path() / "up.log").string();
    auto up = Process::Spawn(spec);
    ASSERT_TRUE(up.ok()) << up.status().ToString();
    up_ = std::move(up).value().release();
    bool ready = testing::WaitFor(
        [] {
          if (up_->Poll().has_value()) return true;
          std::this_thread::sleep_for(std::chrono::milliseconds(500));  // one run per ~0.5 s
          PluginRun run = Run({"status", "db", "-o", "json"});
          if (run.exit_code != 0) return false;
          Json doc = Json::parse(run.out, nullptr, false);
          return !doc.is_discarded() && doc["cluster"]["ready"] == 2 &&
                 doc["attachments"].size() == 1 && doc["attachments"][0]["phase"] == "Ready";
        },
        std::chrono::seconds(180));
    ASSERT_FALSE(up_->Poll().has_value()) << ReadFile(dir_->path() / "up.log");
    ASSERT_TRUE(ready) << ReadFile(dir_->path() / "up.log");
  }

  static void TearDownTestSuite() {
    if (up_ != nullptr) {
      Run({"local", "down"});
      testing::WaitFor([] { return up_->Poll().has_value(); }, std::chrono::seconds(60));
      delete up_;
      up_ = nullptr;
    }
    delete dir_;
    dir_ = nullptr;
  }

  static std::string State() { return (dir_->path() / "state").string(); }

  // `petrel <args> --state-dir STATE` with no KUBECONFIG in the environment: local mode.
  static PluginRun Run(const std::vector<std::string>& args, const std::string& prefix = "") {
    static int counter = 0;
    std::string base = (dir_->path() / ("run-" + std::to_string(++counter))).string();
    std::string cmd = "cd " + ShellQuote(dir_->path().string()) + " && env -i PATH=/usr/bin:/bin HOME=" +
                      ShellQuote(dir_->path().string()) + " " + prefix + " " +
                      ShellQuote(std::getenv("PETREL_BINARY"));
    for (const auto& a : args) cmd += " " + ShellQuote(a);
    cmd += " --state-dir " + ShellQuote(State()) + " </dev/null >" + ShellQuote(base + ".out") +
           " 2>" + ShellQuote(base + ".err");
    int status = std::system(cmd.c_str());
    PluginRun run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadFile(base + ".out");
    run.err = ReadFile(base + ".err");
    return run;
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline Process* up_ = nullptr;
};

TEST_F(PluginLocalE2e, StatusChecksUsersAndDatabasesOfTheLocalCluster) {
  PluginRun status = Run({"status", "db"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("Cluster:  default/db"));
  EXPECT_THAT(status.out, HasSubstr("Replicas: 2/2 ready"));
  EXPECT_THAT(status.out, ContainsRegex("db-1 +primary +true"));
  EXPECT_THAT(status.out, ContainsRegex("db-2 +replica +true"));
  EXPECT_THAT(status.out, HasSubstr("CHECKS"));
  EXPECT_THAT(status.out, ContainsRegex("default +web +web +web +owner +Ready"));

  PluginRun checks = Run({"checks", "list", "db"});
  ASSERT_EQ(checks.exit_code, 0) << checks.err;
  EXPECT_THAT(checks.out, HasSubstr("Health checks of default/db"));
  EXPECT_THAT(checks.out, ContainsRegex("db-1 +primary "));
  EXPECT_THAT(checks.out, ContainsRegex("db-2 +replica "));

  PluginRun users = Run({"users", "list", "db"});
  ASSERT_EQ(users.exit_code, 0) << users.err;
  EXPECT_THAT(users.out, ContainsRegex("web +attachment default/web +web +owner +Ready"));
  EXPECT_THAT(users.out, ContainsRegex("postgres +petrel .*superuser"));
  EXPECT_THAT(users.out, HasSubstr("source: live SQL on 127."));

  PluginRun dbs = Run({"db", "list", "db", "-o", "json"});
  ASSERT_EQ(dbs.exit_code, 0) << dbs.err;
  Json doc = Json::parse(dbs.out);
  EXPECT_EQ(doc["source"], "live");
  bool web = false;
  for (const auto& d : doc["databases"]) {
    web |= d["name"] == "web" && d["ownedBy"] == "attachment default/web" && d["inDatabase"];
  }
  EXPECT_TRUE(web) << dbs.out;
}

TEST_F(PluginLocalE2e, LogsShowPostgresOutputOfOneOrEveryInstance) {
  PluginRun one = Run({"logs", "db", "db-1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("database system is ready to accept connections"));

  PluginRun tail = Run({"logs", "db", "db-2", "--tail", "3"});
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  EXPECT_EQ(std::count(tail.out.begin(), tail.out.end(), '\n'), 3) << tail.out;

  PluginRun all = Run({"logs", "db", "--tail", "2"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_THAT(all.out, ContainsRegex("(^|\n)\\[db-1\\] "));
  EXPECT_THAT(all.out, ContainsRegex("\n\\[db-2\\] "));

  // --follow keeps the stream open: it prints the tail and is still running when stopped.
  PluginRun follow = Run({"logs", "db", "db-1", "--tail", "1", "--follow"}, "timeout 3");
  EXPECT_EQ(follow.exit_code, 124) << follow.err;
  EXPECT_GE(std::count(follow.out.begin(), follow.out.end(), '\n'), 1) << follow.out;

  PluginRun unknown = Run({"logs", "db", "db-9"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no instance \"db-9\" (instances: db-1, db-2)"));
}

TEST_F(PluginLocalE2e, RealKubectlReadsTheLocalApiWithTheWrittenKubeconfig) {
  std::string kubeconfig = State() + "/kubeconfig";
  EXPECT_EQ(fs::status(kubeconfig).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const char* assets = std::getenv("KUBEBUILDER_ASSETS");
  std::string kubectl = std::string(assets != nullptr ? assets : "/root/.cache/petrel/envtest-1.20.2") +
                        "/kubectl";
  if (!fs::exists(kubectl)) GTEST_SKIP() << "no kubectl 1.20 at " << kubectl;
  std::string out = (dir_->path() / "kubectl.out").string();
  int status = std::system(("timeout 30 " + kubectl + " --kubeconfig " + kubeconfig +
                            " get pgc,pods -o name > " + out + " 2>&1")
                               .c_str());
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(out);
  EXPECT_THAT(ReadFile(out), HasSubstr("postgrescluster.petrel.dev/db\n"));
  EXPECT_THAT(ReadFile(out), HasSubstr("pod/db-2\n"));
}

TEST_F(PluginLocalE2e, SwitchoverToANamedReplicaReportsTheNewPrimary) {
  PluginRun run = Run({"switchover", "db", "--to", "db-2", "--timeout", "120"});
  ASSERT_EQ(run.exit_code, 0) << run.err << ReadFile(dir_->path() / "up.log");
  EXPECT_THAT(run.out, HasSubstr("Switchover of default/db from db-1 to db-2 requested"));
  EXPECT_THAT(run.out, HasSubstr("Switchover complete: db-2 is the primary of default/db (was db-1)"));

  PluginRun status = Run({"status", "db", "-o", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  Json doc = Json::parse(status.out);
  EXPECT_EQ(doc["cluster"]["primary"], "db-2");
  for (const auto& i : doc["instances"]) {
    if (i["name"] == "db-2") {
      EXPECT_EQ(i["role"], "primary");
    }
  }

  PluginRun again = Run({"switchover", "db", "--to", "db-2"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("db-2 is already the primary"));
}

TEST(PluginLocalMode, WithoutARunningPetrelLocalTheErrorSaysHowToStartOne) {
  testing::TempDir dir("plugin-no-local");
  std::string cmd = "env -i PATH=/usr/bin:/bin HOME=" + dir.path().string() + " " +
                    std::getenv("PETREL_BINARY") + " status db --state-dir " +
                    (dir.path() / "state").string() + " 2>" + (dir.path() / "err").string();
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(ReadFile(dir.path() / "err"),
              HasSubstr("no petrel local is running with state directory " +
                        (dir.path() / "state").string() + "; start one with `petrel local up"));
}

}  // namespace
}  // namespace petrel
