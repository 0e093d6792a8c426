// The kubectl plugin end to end: the real `petrel` binary, linked as kubectl-petrel in a temp
// directory on PATH, run through the real kubectl 1.20 (plugin discovery) against a real
// kube-apiserver with Petrel's CRDs installed.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "core/object.h"
#include "core/types.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

struct PluginRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class PluginEnvtest : public EnvtestTest {
 protected:
  static void SetUpTestSuite() {
    auto env = Envtest::Shared();
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    const char* source = std::getenv("PETREL_SOURCE_DIR");
    const char* binary = std::getenv("PETREL_BINARY");
    ASSERT_NE(source, nullptr);
    ASSERT_NE(binary, nullptr);
    // The PostgresCluster CRD is not on main yet: tests/cli/testdata holds the cluster
    // branch's file until it lands in crds/.
    for (const std::string& crd : {std::string(source) + "/crds/postgresattachment.yaml",
                                   std::string(source) + "/tests/cli/testdata/postgrescluster.yaml"}) {
      auto r = (*env)->Kubectl({"apply", "-f", crd});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    auto r = (*env)->Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                              "crd/postgresclusters.petrel.dev",
                              "crd/postgresattachments.petrel.dev"});
    ASSERT_EQ(r.exit_code, 0) << r.err;

    bin_dir_ = new fs::path((*env)->Dir() + "/plugin-bin");
    fs::create_directories(*bin_dir_);
    fs::create_symlink(binary, *bin_dir_ / "kubectl-petrel");
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
                    {"spec", {{"replicas", 2},
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
                {"metadata", {{"name", name}, {"namespace", ns_},
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

  static fs::path* bin_dir_;
};

fs::path* PluginEnvtest::bin_dir_ = nullptr;

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
  EXPECT_THAT(users.out, ContainsRegex("shop_rw +attachment " + ns_ + "/shop +shop +owner +Pending"));
  EXPECT_THAT(users.out, ContainsRegex("app +bootstrap +app +owner"));
  EXPECT_THAT(users.out, HasSubstr("source: PostgresAttachment objects and the cluster spec (no "
                                   "live SQL: cannot read Secret " + ns_ + "/db-superuser"));

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

  PluginRun attach = Petrel({"attach", "db", "web", "-n", ns_, "--privileges", "readOnly",
                       "--database", "app"});
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
    PluginRun dry = Petrel({"create", "db", "--preset", preset, "-n", ns_, "--dry-run", "-o", "yaml"});
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    auto server_dry = env().Kubectl({"apply", "--dry-run=server", "-f", "-"}, dry.out);
    EXPECT_EQ(server_dry.exit_code, 0) << preset << ": " << server_dry.err << dry.out;
  }
  EXPECT_EQ(client().Get(resources::kPostgresCluster, {ns_, "db"}).status().code(),
            Code::kNotFound);

  PluginRun missing = Petrel({"create", "db", "-n", ns_});  // stdin is not a terminal
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("--preset is required"));

  PluginRun create = Petrel({"create", "db", "--preset", "production", "--storage", "20Gi", "-n", ns_});
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
