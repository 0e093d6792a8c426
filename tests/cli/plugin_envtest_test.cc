// The kubectl plugin end to end: the real `petrel` binary, linked as kubectl-petrel in a temp
// directory on PATH, run through the real kubectl 1.20 (plugin discovery) against a real
// kube-apiserver with Petrel's CRDs installed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/object.h"
#include "core/types.h"
#include "tests/cli/plugin_fixture.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

class PluginEnvtest : public PluginFixture {
 protected:
  static void SetUpTestSuite() { SetUpPlugin(FakePsql::kYes); }

  // status.instances[].checks comes with the health checks work (crds/ schema owned there);
  // until the installed schema has it, the API server would prune it, so the test adds it.
  void EnsureCrdKeepsChecks() {
    const std::string items =
        "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/instances/items";
    auto crd = client().Get(resources::kCustomResourceDefinition,
                            {"", "postgresclusters.petrel.dev"});
    ASSERT_TRUE(crd.ok()) << crd.status().ToString();
    if (crd->contains(Json::json_pointer(items + "/properties/checks"))) return;
    Json check = Json::parse(R"({"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "status": {"type": "string"},
        "output": {"type": "string"}}}})");
    Json patch = Json::array({{{"op", "add"}, {"path", items + "/properties/checks"}, {"value", check}}});
    auto patched = client().Patch(resources::kCustomResourceDefinition,
                                  {"", "postgresclusters.petrel.dev"}, PatchType::kJson, patch);
    ASSERT_TRUE(patched.ok()) << patched.status().ToString();
    // The new schema applies once the API server has reloaded the CRD.
    for (int i = 0; i < 100; ++i) {
      Json probe = MakeCluster("checks-probe-" + std::to_string(i));
      probe["status"]["instances"][0]["checks"] = Json::array({{{"name", "vm"}}});
      auto stored = client().UpdateStatus(resources::kPostgresCluster, probe);
      if (stored.ok() && (*stored)["status"]["instances"][0].contains("checks")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "the API server kept pruning status.instances[].checks";
  }
};

TEST_F(PluginEnvtest, StatusShowsClusterInstancesServicesAndAttachmentsFromOtherNamespaces) {
  MakeCluster("db");
  MakeService("db-rw", "127.0.0.1:15432");
  auto apps = env().NewNamespace("apps");
  ASSERT_TRUE(apps.ok());
  Json attachment = {{"apiVersion", "petrel.dev/v1alpha1"},
                     {"kind", "PostgresAttachment"},
                     {"metadata", {{"name", "web-app"}, {"namespace", *apps}}},
                     {"spec", {{"clusterRef", {{"name", "db"}, {"namespace", ns_}}}}}};
  ASSERT_TRUE(client().Create(resources::kPostgresAttachment, attachment).ok());

  PluginRun run = Petrel({"status", "db", "-n", ns_});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Cluster:  " + ns_ + "/db"));
  EXPECT_THAT(run.out, HasSubstr("Phase:    Degraded (ReplicaNotStreaming)"));
  EXPECT_THAT(run.out, HasSubstr("Replicas: 1/2 ready"));
  EXPECT_THAT(run.out, HasSubstr("InstanceNotReady   one replica is not streaming"));
  EXPECT_THAT(run.out, HasSubstr("db-2   replica   false   Starting   4.0 kB"));
  EXPECT_THAT(run.out, HasSubstr("db-rw   ClusterIP   127.0.0.1:15432 (local)"));
  EXPECT_THAT(run.out, HasSubstr(*apps + "   web-app   web_app"));

  PluginRun json = Petrel({"status", "db", "-n", ns_, "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Json doc = Json::parse(json.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded()) << json.out;
  EXPECT_EQ(doc["cluster"]["primary"], "db-1");
  EXPECT_EQ(doc["instances"].size(), 2u);
  EXPECT_EQ(doc["attachments"][0]["namespace"], *apps);

  PluginRun yaml = Petrel({"status", "db", "-n", ns_, "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  YAML::Node node = YAML::Load(yaml.out);
  EXPECT_EQ(node["cluster"]["phase"].as<std::string>(), "Degraded");
}

TEST_F(PluginEnvtest, ListShowsClustersOfTheNamespaceOrAll) {
  MakeCluster("alpha");
  PluginRun run = Petrel({"list", "-n", ns_});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("NAME    REPLICAS   READY   PRIMARY   VERSION   PHASE"));
  EXPECT_THAT(run.out, HasSubstr("alpha   2          1       alpha-1   15        Degraded"));

  PluginRun all = Petrel({"list", "-A", "-o", "json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  Json doc = Json::parse(all.out);
  bool found = false;
  for (const auto& c : doc["clusters"]) found |= c["namespace"] == ns_ && c["name"] == "alpha";
  EXPECT_TRUE(found) << all.out;
}

TEST_F(PluginEnvtest, UsersAndDatabasesComeFromAttachmentsWhenSqlIsOutOfReach) {
  MakeCluster("db");
  Json attachment = {{"apiVersion", "petrel.dev/v1alpha1"},
                     {"kind", "PostgresAttachment"},
                     {"metadata", {{"name", "shop"}, {"namespace", ns_}}},
                     {"spec", {{"clusterRef", {{"name", "db"}}}, {"roleName", "shop_rw"}}}};
  ASSERT_TRUE(client().Create(resources::kPostgresAttachment, attachment).ok());

  PluginRun users = Petrel({"users", "list", "db", "-n", ns_});
  ASSERT_EQ(users.exit_code, 0) << users.err;
  EXPECT_THAT(users.out,
              ContainsRegex("shop_rw +attachment " + ns_ + "/shop +shop +owner +Pending"));
  EXPECT_THAT(users.out, ContainsRegex("app +bootstrap +app +owner"));
  EXPECT_THAT(users.out, HasSubstr("source: PostgresAttachment objects and the cluster spec (no "
                                   "live SQL: cannot read Secret " +
                                   ns_ + "/db-superuser"));

  PluginRun dbs = Petrel({"db", "list", "db", "-n", ns_, "-o", "json"});
  ASSERT_EQ(dbs.exit_code, 0) << dbs.err;
  Json doc = Json::parse(dbs.out);
  EXPECT_EQ(doc["source"], "objects");
  bool found = false;
  for (const auto& d : doc["databases"]) {
    found |= d["name"] == "shop" && d["ownedBy"] == "attachment " + ns_ + "/shop";
  }
  EXPECT_TRUE(found) << dbs.out;
}

TEST_F(PluginEnvtest, AttachCreatesValidatedAttachmentAndDetachDeletesIt) {
  MakeCluster("db");
  PluginRun bad = Petrel({"attach", "db", "web", "-n", ns_, "--role", "postgres"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("roleName"));
  EXPECT_EQ(client().Get(resources::kPostgresAttachment, {ns_, "web"}).status().code(),
            Code::kNotFound);

  PluginRun dry = Petrel({"attach", "db", "web", "-n", ns_, "--dry-run", "-o", "yaml"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  auto server_dry = env().Kubectl({"apply", "--dry-run=server", "-f", "-"}, dry.out);
  EXPECT_EQ(server_dry.exit_code, 0) << server_dry.err << dry.out;
  EXPECT_EQ(client().Get(resources::kPostgresAttachment, {ns_, "web"}).status().code(),
            Code::kNotFound);

  PluginRun attach =
      Petrel({"attach", "db", "web", "-n", ns_, "--privileges", "readOnly", "--database", "app"});
  ASSERT_EQ(attach.exit_code, 0) << attach.err;
  EXPECT_THAT(attach.out, HasSubstr("Secret " + ns_ + "/web-database"));
  auto created = client().Get(resources::kPostgresAttachment, {ns_, "web"});
  ASSERT_TRUE(created.ok());
  EXPECT_EQ((*created)["spec"]["clusterRef"]["name"], "db");
  EXPECT_EQ((*created)["spec"]["privileges"], "readOnly");

  PluginRun again = Petrel({"attach", "db", "web", "-n", ns_});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already exists"));

  PluginRun detach = Petrel({"detach", "web", "-n", ns_});
  ASSERT_EQ(detach.exit_code, 0) << detach.err;
  EXPECT_THAT(detach.out, HasSubstr("Database app is kept"));
  EXPECT_EQ(client().Get(resources::kPostgresAttachment, {ns_, "web"}).status().code(),
            Code::kNotFound);

  PluginRun gone = Petrel({"detach", "web", "-n", ns_});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("no PostgresAttachment \"web\""));
}

TEST_F(PluginEnvtest, CreateDryRunManifestsAreAcceptedByTheServer) {
  for (const char* preset : {"development", "production"}) {
    PluginRun dry =
        Petrel({"create", "db", "--preset", preset, "-n", ns_, "--dry-run", "-o", "yaml"});
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    auto server_dry = env().Kubectl({"apply", "--dry-run=server", "-f", "-"}, dry.out);
    EXPECT_EQ(server_dry.exit_code, 0) << preset << ": " << server_dry.err << dry.out;
  }
  EXPECT_EQ(client().Get(resources::kPostgresCluster, {ns_, "db"}).status().code(),
            Code::kNotFound);

  PluginRun missing = Petrel({"create", "db", "-n", ns_});  // stdin is not a terminal
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("--preset is required"));

  PluginRun create =
      Petrel({"create", "db", "--preset", "production", "--storage", "20Gi", "-n", ns_});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  auto created = client().Get(resources::kPostgresCluster, {ns_, "db"});
  ASSERT_TRUE(created.ok());
  EXPECT_EQ((*created)["spec"]["replicas"], 3);
  EXPECT_EQ((*created)["spec"]["storage"]["size"], "20Gi");
}

TEST_F(PluginEnvtest, MissingClusterNamespaceOrKubeconfigFailWithClearErrors) {
  PluginRun cluster = Petrel({"status", "nope", "-n", ns_});
  EXPECT_EQ(cluster.exit_code, 1);
  EXPECT_THAT(cluster.err, HasSubstr("no PostgresCluster \"nope\" in namespace \"" + ns_ +
                                     "\"; list them with: kubectl petrel list -n " + ns_));
  EXPECT_EQ(cluster.out, "");

  PluginRun ns = Petrel({"status", "db", "-n", "no-such-namespace"});
  EXPECT_EQ(ns.exit_code, 1);
  EXPECT_THAT(ns.err, HasSubstr("namespace \"no-such-namespace\" does not exist"));

  PluginRun kubeconfig = Petrel({"list", "--kubeconfig", env().Dir() + "/missing.kubeconfig"});
  EXPECT_EQ(kubeconfig.exit_code, 1);
  EXPECT_THAT(kubeconfig.err, HasSubstr("does not exist; pass an existing file with --kubeconfig"));
}

TEST_F(PluginEnvtest, ConnectPassesThePasswordInTheEnvironmentNotArgv) {
  MakeCluster("db");
  MakeService("db-rw", "127.0.0.1:15432");
  const std::string password = "hunter2-'\"$x";
  MakeSecret("db-superuser", {{"username", "postgres"}, {"password", password}});
  std::string record = env().Dir() + "/psql-" + ns_;

  PluginRun run = Petrel({"connect", "db", "-n", ns_}, "", "PSQL_RECORD=" + ShellQuote(record));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(ReadFile(record + ".argv"),
            "--host\n127.0.0.1\n--port\n15432\n--username\npostgres\n--dbname\napp\n");
  EXPECT_EQ(ReadFile(record + ".password"), password);
  EXPECT_THAT(run.out + run.err, Not(HasSubstr("hunter2")));

  Json attachment = {{"apiVersion", "petrel.dev/v1alpha1"},
                     {"kind", "PostgresAttachment"},
                     {"metadata", {{"name", "web"}, {"namespace", ns_}}},
                     {"spec", {{"clusterRef", {{"name", "db"}}}}}};
  ASSERT_TRUE(client().Create(resources::kPostgresAttachment, attachment).ok());
  MakeSecret("web-database",
             {{"DATABASE_URL", "postgresql://web:s%40fe@127.0.0.1:15432/web?sslmode=disable"}});
  PluginRun as = Petrel({"connect", "db", "-n", ns_, "--as", "web"}, "",
                        "PSQL_RECORD=" + ShellQuote(record + "-as"));
  ASSERT_EQ(as.exit_code, 0) << as.err;
  EXPECT_EQ(ReadFile(record + "-as.argv"),
            "--dbname\npostgresql://web@127.0.0.1:15432/web?sslmode=disable\n");
  EXPECT_EQ(ReadFile(record + "-as.password"), "s@fe");
}

TEST_F(PluginEnvtest, ChecksListAndStatusShowEachInstancesChecksOrDashes) {
  EnsureCrdKeepsChecks();
  Json cluster = MakeCluster("db");
  cluster["status"]["instances"][0]["checks"] = Json::parse(R"([
    {"name": "vm", "status": "passing", "output": "disk 12% used"},
    {"name": "pg", "status": "passing", "output": "connections 3/100, writable"},
    {"name": "role", "status": "passing", "output": "leader"}])");
  auto updated = client().UpdateStatus(resources::kPostgresCluster, cluster);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();

  PluginRun checks = Petrel({"checks", "list", "db", "-n", ns_});
  ASSERT_EQ(checks.exit_code, 0) << checks.err;
  EXPECT_THAT(checks.out, ContainsRegex("db-1 +primary +pg +passing +connections 3/100, writable"));
  EXPECT_THAT(checks.out, ContainsRegex("db-2 +replica +- +- +-"));

  PluginRun status = Petrel({"status", "db", "-n", ns_});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, ContainsRegex("db-1 +primary +true +Running .* 3 total, 3 passing"));

  PluginRun json = Petrel({"checks", "list", "db", "-n", ns_, "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(Json::parse(json.out)["checks"][2]["output"], "leader");
}

TEST_F(PluginEnvtest, SwitchoverValidatesSetsTargetPrimaryAndWaitsForTheNewPrimary) {
  Json cluster = MakeCluster("db");
  PluginRun not_ready = Petrel({"switchover", "db", "-n", ns_, "--to", "db-2"});
  EXPECT_EQ(not_ready.exit_code, 1);
  EXPECT_THAT(not_ready.err, HasSubstr("instance db-2 is not ready (phase Starting)"));
  PluginRun unknown = Petrel({"switchover", "db", "-n", ns_, "--to", "db-9"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("has no instance \"db-9\" (instances: db-1, db-2)"));
  PluginRun missing = Petrel({"switchover", "nope", "-n", ns_});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no PostgresCluster \"nope\""));
  EXPECT_EQ(client().Get(resources::kPostgresCluster, {ns_, "db"}).value()["status"].value(
                "targetPrimary", ""),
            "");

  cluster["status"]["instances"][1]["ready"] = true;
  cluster["status"]["instances"][1]["phase"] = "Running";
  ASSERT_TRUE(client().UpdateStatus(resources::kPostgresCluster, cluster).ok());

  // Plays the controller: once targetPrimary is set, the replica becomes the primary.
  std::thread controller([this] {
    for (int i = 0; i < 200; ++i) {
      auto c = client().Get(resources::kPostgresCluster, {ns_, "db"});
      if (c.ok() && (*c)["status"].value("targetPrimary", "") == "db-2") {
        Json next = *c;
        next["status"]["currentPrimary"] = "db-2";
        next["status"]["instances"][0]["role"] = "replica";
        next["status"]["instances"][1]["role"] = "primary";
        if (client().UpdateStatus(resources::kPostgresCluster, next).ok()) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  PluginRun run = Petrel({"switchover", "db", "-n", ns_, "--timeout", "30"});
  controller.join();
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Switchover of " + ns_ + "/db from db-1 to db-2 requested"));
  EXPECT_THAT(run.out, HasSubstr("Switchover complete: db-2 is the primary of " + ns_ +
                                 "/db (was db-1)"));

  PluginRun again = Petrel({"switchover", "db", "-n", ns_, "--to", "db-2"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("db-2 is already the primary of cluster db"));
}

TEST_F(PluginEnvtest, LogsNeedANodeToReadFromAndSaySo) {
  MakeCluster("db");
  PluginRun none = Petrel({"logs", "db", "-n", ns_});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("cluster db has no Pods yet"));

  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "db-1"}, {"namespace", ns_}, {"labels", {{"petrel.dev/cluster", "db"}}}}},
              {"spec", {{"containers", {{{"name", "postgres"}, {"image", "postgres:15"}}}}}}};
  ASSERT_TRUE(client().Create(resources::kPod, pod).ok());
  PluginRun unknown = Petrel({"logs", "db", "db-7", "-n", ns_});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no instance \"db-7\" (instances: db-1)"));

  // envtest has no kubelet: the API server refuses, and the error names the Pod.
  PluginRun logs = Petrel({"logs", "db", "--tail", "5", "-n", ns_});
  EXPECT_EQ(logs.exit_code, 1);
  EXPECT_THAT(logs.err, HasSubstr("reading the log of Pod " + ns_ + "/db-1 (container postgres)"));
  EXPECT_THAT(logs.err, HasSubstr("the Pod is not scheduled to a node yet, so no kubelet runs "
                                  "it and it has no log"));
}

}  // namespace
}  // namespace petrel
