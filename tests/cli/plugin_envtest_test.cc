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

}  // namespace
}  // namespace petrel
