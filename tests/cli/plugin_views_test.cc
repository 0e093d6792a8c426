// Unit tests of the kubectl plugin's pure part: documents and tables from fixture objects,
// preset manifests, attachment validation and the psql invocation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <functional>

#include "cli/plugin/output.h"
#include "cli/plugin/views.h"

namespace petrel::plugin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Json Cluster() {
  return Json::parse(R"({
    "apiVersion": "petrel.dev/v1alpha1", "kind": "PostgresCluster",
    "metadata": {"name": "db", "namespace": "data", "generation": 2},
    "spec": {"replicas": 3, "image": "ghcr.io/petrel-dev/postgres:15.4",
             "storage": {"size": "10Gi"}, "bootstrap": {"initdb": {"database": "shop"}}},
    "status": {"observedGeneration": 2, "phase": "Degraded", "phaseReason": "ReplicaNotStreaming",
      "replicas": 3, "readyReplicas": 2, "currentPrimary": "db-1", "targetPrimary": "db-1",
      "image": "ghcr.io/petrel-dev/postgres:15.4", "postgresMajorVersion": 15,
      "conditions": [
        {"type": "Ready", "status": "False", "reason": "InstanceNotReady",
         "message": "db-3 is not streaming from db-1", "lastTransitionTime": "2026-11-24T00:00:00Z"}],
      "instances": [
        {"name": "db-1", "role": "primary", "ready": true, "phase": "Running", "timeline": 2, "lagBytes": 0},
        {"name": "db-2", "role": "replica", "ready": true, "phase": "Running", "timeline": 2, "lagBytes": 2048},
        {"name": "db-3", "role": "replica", "ready": false, "phase": "Starting", "timeline": 1}]}
  })");
}

Json Attachment(const std::string& ns, const std::string& name, const std::string& privileges,
                const std::string& database = "") {
  Json a = {{"apiVersion", "petrel.dev/v1alpha1"},
            {"kind", "PostgresAttachment"},
            {"metadata", {{"name", name}, {"namespace", ns}}},
            {"spec",
             {{"clusterRef", {{"name", "db"}, {"namespace", "data"}}}, {"privileges", privileges}}},
            {"status", {{"phase", "Ready"}}}};
  if (!database.empty()) a["spec"]["databaseName"] = database;
  return a;
}

TEST(RenderTable, PadsColumnsToTheWidestCellWithoutTrailingBlanks) {
  Table t{{"NAME", "READY"}, {{"db-long-name", "1/1"}, {"x", ""}}};
  EXPECT_EQ(RenderTable(t),
            "NAME           READY\n"
            "db-long-name   1/1\n"
            "x\n");
}

TEST(RenderYaml, QuotesStringsThatWouldChangeTypeAndRoundTrips) {
  Json doc = {{"a", "true"},
              {"b", "15"},
              {"c", ""},
              {"d", 15},
              {"e", true},
              {"f", nullptr},
              {"g", Json::array({"x", 1})},
              {"h", "plain"}};
  auto yaml = RenderYaml(doc);
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  YAML::Node node = YAML::Load(*yaml);
  EXPECT_EQ(node["a"].Tag(), "!");  // quoted: a string, not a bool
  EXPECT_EQ(node["a"].as<std::string>(), "true");
  EXPECT_EQ(node["b"].Tag(), "!");
  EXPECT_EQ(node["d"].as<int>(), 15);
  EXPECT_TRUE(node["e"].as<bool>());
  EXPECT_TRUE(node["f"].IsNull());
  EXPECT_EQ(node["g"][0].as<std::string>(), "x");
  EXPECT_EQ(node["h"].as<std::string>(), "plain");
}

TEST(ParseOutputFormat, RejectsUnknownFormatsNamingTheAcceptedOnes) {
  EXPECT_EQ(*ParseOutputFormat(""), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("yaml"), OutputFormat::kYaml);
  auto bad = ParseOutputFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("-o table, -o json or -o yaml"));
}

TEST(ClusterList, SummarisesSpecAndStatus) {
  Json summaries = Json::array({ClusterSummary(Cluster())});
  Table t = ClusterListTable(summaries, /*with_namespace=*/true);
  EXPECT_THAT(t.headers,
              ElementsAre("NAMESPACE", "NAME", "REPLICAS", "READY", "PRIMARY", "VERSION", "PHASE"));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_THAT(t.rows[0], ElementsAre("data", "db", "3", "2", "db-1", "15", "Degraded"));
}

TEST(ClusterList, ClusterWithoutStatusIsPending) {
  Json c = Cluster();
  c.erase("status");
  Json s = ClusterSummary(c);
  EXPECT_EQ(s["phase"], "Pending");
  EXPECT_EQ(s["ready"], 0);
  EXPECT_TRUE(s["version"].is_null());
  EXPECT_EQ(s["image"], "ghcr.io/petrel-dev/postgres:15.4");
}

TEST(AttachmentReferences, ClusterRefNamespaceDefaultsToTheAttachments) {
  Json same = Attachment("data", "shop", "owner");
  same["spec"]["clusterRef"].erase("namespace");
  EXPECT_TRUE(AttachmentReferences(same, {"data", "db"}));
  Json elsewhere = same;
  elsewhere["metadata"]["namespace"] = "apps";
  EXPECT_FALSE(AttachmentReferences(elsewhere, {"data", "db"}));
  EXPECT_TRUE(AttachmentReferences(Attachment("apps", "web", "owner"), {"data", "db"}));
  EXPECT_FALSE(AttachmentReferences(Attachment("apps", "web", "owner"), {"data", "other"}));
}

TEST(StatusReport, HoldsClusterConditionsInstancesServicesAndAttachments) {
  ClusterObjects objects;
  objects.cluster = Cluster();
  objects.services.push_back(Json::parse(R"({"metadata": {"name": "db-rw",
      "annotations": {"petrel.dev/local-address": "127.0.1.5:15432"}},
      "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.7", "ports": [{"port": 5432}]}})"));
  objects.endpoints.push_back(Json::parse(R"({"metadata": {"name": "db-rw"},
      "subsets": [{"addresses": [{"ip": "10.1.0.4", "targetRef": {"name": "db-1"}}],
                   "notReadyAddresses": [{"ip": "10.1.0.6"}]}]})"));
  objects.attachments.push_back(Attachment("apps", "web-app", "owner"));

  Json report = StatusReport(objects);
  EXPECT_EQ(report["cluster"]["phase"], "Degraded");
  EXPECT_EQ(report["conditions"][0]["message"], "db-3 is not streaming from db-1");
  EXPECT_EQ(report["instances"].size(), 3u);
  EXPECT_TRUE(report["instances"][2]["lagBytes"].is_null());
  EXPECT_EQ(report["services"][0]["endpoints"][0], "db-1 (10.1.0.4)");
  EXPECT_EQ(report["attachments"][0]["database"], "web_app");
  EXPECT_EQ(report["attachments"][0]["secret"], "web-app-database");

  std::string text = RenderStatusText(report);
  EXPECT_THAT(text, HasSubstr("Phase:    Degraded (ReplicaNotStreaming)"));
  EXPECT_THAT(text, HasSubstr("Replicas: 2/3 ready (3 exist)"));
  EXPECT_THAT(text, HasSubstr("Primary:  db-1\n"));
  EXPECT_THAT(text, HasSubstr("(PostgreSQL 15)"));
  EXPECT_THAT(text, HasSubstr("InstanceNotReady   db-3 is not streaming from db-1"));
  EXPECT_THAT(text, HasSubstr("db-2   replica   true    Running    2.0 kB"));
  EXPECT_THAT(text, HasSubstr("127.0.1.5:15432 (local)"));
  EXPECT_THAT(text, HasSubstr("10.1.0.6 [not ready]"));
  EXPECT_THAT(text, HasSubstr("apps        web-app   web_app"));
}

TEST(StatusReport, SaysWhenStatusLagsTheSpec) {
  ClusterObjects objects;
  objects.cluster = Cluster();
  objects.cluster["metadata"]["generation"] = 3;
  EXPECT_THAT(RenderStatusText(StatusReport(objects)),
              HasSubstr("status describes generation 2; the spec is at generation 3"));
}

TEST(UsersReport, FromObjectsNamesEveryRoleAndItsOwner) {
  std::vector<Json> attachments = {Attachment("apps", "web", "owner"),
                                   Attachment("apps", "report", "readOnly", "web")};
  CatalogSources sources;
  sources.note = "cannot read Secret data/db-superuser: forbidden";
  Json report = UsersReport(Cluster(), attachments, sources);
  EXPECT_EQ(report["source"], "objects");
  std::string text = RenderUsersText(report);
  EXPECT_THAT(text, HasSubstr("postgres"));
  EXPECT_THAT(text, HasSubstr("shop                bootstrap"));
  EXPECT_THAT(text, HasSubstr("web                 attachment apps/web      web        owner"));
  EXPECT_THAT(text, HasSubstr("report              attachment apps/report   web        readOnly"));
  EXPECT_THAT(text, HasSubstr("source: PostgresAttachment objects and the cluster spec (no live "
                              "SQL: cannot read Secret data/db-superuser: forbidden)"));
}

TEST(UsersReport, LiveCatalogJoinsByMarkerAndFlagsMissingRoles) {
  std::vector<Json> attachments = {Attachment("apps", "web", "owner"),
                                   Attachment("apps", "gone", "owner")};
  CatalogSources sources;
  sources.live = LiveCatalog{{},
                             {{"postgres", true, -1, std::nullopt},
                              {"web", false, 10, ObjectKey{"apps", "web"}},
                              {"legacy", false, -1, std::nullopt}}};
  sources.live_address = "127.0.1.5:15432";
  Json report = UsersReport(Cluster(), attachments, sources);
  EXPECT_EQ(report["source"], "live");
  ASSERT_EQ(report["users"].size(), 4u);
  EXPECT_EQ(report["users"][1]["ownedBy"]["attachment"], "apps/web");
  EXPECT_EQ(report["users"][2]["ownedBy"]["kind"], "unmanaged");
  EXPECT_EQ(report["users"][3]["role"], "gone");
  EXPECT_FALSE(report["users"][3]["inDatabase"].get<bool>());
  std::string text = RenderUsersText(report);
  EXPECT_THAT(text, HasSubstr("Ready, not in database"));
  EXPECT_THAT(text, HasSubstr("source: live SQL on 127.0.1.5:15432"));
}

TEST(DatabasesReport, OwnerAttachmentAndSharedAccess) {
  std::vector<Json> attachments = {Attachment("apps", "web", "owner"),
                                   Attachment("apps", "report", "readOnly", "web")};
  Json report = DatabasesReport(Cluster(), attachments, CatalogSources{});
  std::string text = RenderDatabasesText(report);
  EXPECT_THAT(text, HasSubstr("shop       shop         bootstrap"));
  EXPECT_THAT(text,
              HasSubstr("web        web          attachment apps/web   apps/report (readOnly)"));
  EXPECT_THAT(text, Not(HasSubstr("SIZE")));

  CatalogSources live;
  live.live = LiveCatalog{{{"postgres", "postgres", 7 * 1024 * 1024}, {"web", "web", 1024}}, {}};
  live.live_address = "127.0.0.1:5432";
  attachments.push_back(Attachment("apps", "fresh", "owner"));  // not reconciled yet
  Json live_report = DatabasesReport(Cluster(), attachments, live);
  std::string live_text = RenderDatabasesText(live_report);
  EXPECT_THAT(live_text, HasSubstr("SIZE"));
  EXPECT_THAT(live_text, HasSubstr("7.0 MB"));
  EXPECT_THAT(live_text, HasSubstr("fresh      fresh        attachment apps/fresh"));
  EXPECT_THAT(live_text, HasSubstr("not in database"));
  // The live listing is the truth: the spec's bootstrap database is not invented.
  EXPECT_THAT(live_text, Not(HasSubstr("shop")));
}

TEST(ServiceAddress, AnnotationWinsOverClusterIp) {
  Json svc = Json::parse(R"({"metadata": {"name": "db-rw",
      "annotations": {"petrel.dev/local-address": "127.0.1.5:15432"}},
      "spec": {"clusterIP": "10.0.0.7", "ports": [{"port": 5432}]}})");
  EXPECT_EQ(*ServiceAddress(svc), std::make_pair(std::string("127.0.1.5"), 15432));
  svc["metadata"]["annotations"]["petrel.dev/local-address"] = "127.0.1.5";
  EXPECT_EQ(ServiceAddress(svc)->second, 5432);
  svc["metadata"].erase("annotations");
  EXPECT_EQ(ServiceAddress(svc)->first, "10.0.0.7");
  svc["spec"]["clusterIP"] = "None";
  EXPECT_EQ(ServiceAddress(svc).status().code(), Code::kNotFound);
  EXPECT_TRUE(IsLoopbackHost("127.0.1.5"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.7"));
}

TEST(BuildAttachment, CrossNamespaceRequestNamesTheClusterNamespace) {
  AttachRequest r{{"data", "db"}, {"apps", "web"}, "", "", AttachPrivileges::kReadOnly};
  auto obj = BuildAttachment(r);
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  EXPECT_EQ((*obj)["metadata"]["namespace"], "apps");
  EXPECT_EQ((*obj)["spec"]["clusterRef"]["namespace"], "data");
  EXPECT_EQ((*obj)["spec"]["privileges"], "readOnly");
  EXPECT_FALSE((*obj)["spec"].contains("databaseName"));
}

struct BadAttach {
  AttachRequest request;
  std::string message_part;
};
class BuildAttachmentRejects : public ::testing::TestWithParam<BadAttach> {};
TEST_P(BuildAttachmentRejects, WithAClearMessage) {
  auto obj = BuildAttachment(GetParam().request);
  ASSERT_FALSE(obj.ok());
  EXPECT_EQ(obj.status().code(), Code::kInvalid);
  EXPECT_THAT(obj.status().ToString(), HasSubstr(GetParam().message_part));
}
INSTANTIATE_TEST_SUITE_P(
    BadRequests, BuildAttachmentRejects,
    ::testing::Values(
        BadAttach{{{"data", "db"}, {"data", "Web_App"}, "", "", AttachPrivileges::kOwner},
                  "must be a DNS label"},
        BadAttach{{{"data", "db"}, {"data", "web"}, "pg_data", "", AttachPrivileges::kOwner},
                  "databaseName"},
        BadAttach{{{"data", "db"}, {"data", "web"}, "", "postgres", AttachPrivileges::kOwner},
                  "roleName"}));

TEST(ParseAttachPrivileges, AcceptsTheThreeCrdValues) {
  EXPECT_EQ(*ParseAttachPrivileges("readWrite"), AttachPrivileges::kReadWrite);
  EXPECT_THAT(ParseAttachPrivileges("admin").status().message(),
              HasSubstr("use owner, readWrite or readOnly"));
}

TEST(BuildClusterFromPreset, DevelopmentIsOneSmallInstanceWithoutPdb) {
  auto obj = BuildClusterFromPreset({{"ns", "dev"}, Preset::kDevelopment, {}, {}, {}});
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  const Json& spec = (*obj)["spec"];
  EXPECT_EQ(spec["replicas"], 1);
  EXPECT_EQ(spec["storage"]["size"], "1Gi");
  EXPECT_EQ(spec["enablePDB"], false);
  EXPECT_FALSE(spec.contains("postgresql"));
  EXPECT_EQ(spec["image"], kDefaultImage);
  EXPECT_EQ((*obj)["metadata"]["namespace"], "ns");
}

TEST(BuildClusterFromPreset, ProductionIsThreeSynchronousInstancesWithPdb) {
  auto obj = BuildClusterFromPreset({{"ns", "prod"}, Preset::kProduction, {}, "40Gi", {}});
  ASSERT_TRUE(obj.ok());
  const Json& spec = (*obj)["spec"];
  EXPECT_EQ(spec["replicas"], 3);
  EXPECT_EQ(spec["storage"]["size"], "40Gi");
  EXPECT_EQ(spec["storage"]["reclaimPolicy"], "Retain");
  EXPECT_EQ(spec["enablePDB"], true);
  EXPECT_EQ(spec["postgresql"]["synchronous"]["number"], 1);
  EXPECT_EQ(spec["postgresql"]["synchronous"]["dataDurability"], "required");
}

struct BadCreate {
  CreateRequest request;
  std::string message_part;
};
class BuildClusterRejects : public ::testing::TestWithParam<BadCreate> {};
TEST_P(BuildClusterRejects, WithAClearMessage) {
  auto obj = BuildClusterFromPreset(GetParam().request);
  ASSERT_FALSE(obj.ok());
  EXPECT_THAT(obj.status().message(), HasSubstr(GetParam().message_part));
}
INSTANTIATE_TEST_SUITE_P(
    BadRequests, BuildClusterRejects,
    ::testing::Values(
        BadCreate{{{"ns", "My_DB"}, Preset::kDevelopment, {}, {}, {}}, "must start with a letter"},
        BadCreate{{{"ns", "db"}, Preset::kProduction, 1, {}, {}}, "needs --replicas 2 or more"},
        BadCreate{{{"ns", "db"}, Preset::kDevelopment, 65, {}, {}}, "between 1 and 64"},
        BadCreate{{{"ns", "db"}, Preset::kDevelopment, {}, "ten gigs", {}}, "write it like 10Gi"},
        BadCreate{{{"ns", "db"}, Preset::kDevelopment, {}, {}, ""}, "--image"},
        BadCreate{{{"ns", "db"}, Preset::kDevelopment, {}, {}, "registry.local/pg:latest"},
                  "cannot tell the Postgres major version"}));

TEST(BuildClusterFromPreset, PostgresVersionFlagCoversImagesWithoutAVersionTag) {
  CreateRequest r{{"ns", "db"}, Preset::kDevelopment, {}, {}, "registry.local/pg:latest", 16};
  auto obj = BuildClusterFromPreset(r);
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  EXPECT_EQ((*obj)["spec"]["postgresVersion"], 16);
}

TEST(ParsePreset, NamesTheChoices) {
  EXPECT_EQ(*ParsePreset("production"), Preset::kProduction);
  EXPECT_THAT(ParsePreset("large").status().message(), HasSubstr("development or production"));
}

TEST(PsqlInvocation, PasswordTravelsInTheEnvironmentOnly) {
  PsqlInvocation inv = BuildPsqlInvocation("127.0.1.5", 15432, "postgres", "app", "s3cr3t!");
  EXPECT_THAT(inv.argv, ElementsAre("psql", "--host", "127.0.1.5", "--port", "15432", "--username",
                                    "postgres", "--dbname", "app"));
  EXPECT_EQ(inv.env.at("PGPASSWORD"), "s3cr3t!");
  for (const auto& a : inv.argv) EXPECT_THAT(a, Not(HasSubstr("s3cr3t")));
}

TEST(PsqlInvocation, DatabaseUrlLosesItsPasswordToTheEnvironment) {
  auto inv =
      PsqlFromDatabaseUrl("postgresql://web:p%40ss%2Fw0rd@db-rw.data.svc:5432/web?sslmode=prefer");
  ASSERT_TRUE(inv.ok());
  EXPECT_THAT(inv->argv, ElementsAre("psql", "--dbname",
                                     "postgresql://web@db-rw.data.svc:5432/web?sslmode=prefer"));
  EXPECT_EQ(inv->env.at("PGPASSWORD"), "p@ss/w0rd");
  EXPECT_FALSE(PsqlFromDatabaseUrl("mysql://x@y/z").ok());
}

// ---- checks --------------------------------------------------------------------------------

Json WithChecks() {
  Json c = Cluster();
  c["status"]["instances"][0]["checks"] = Json::parse(R"([
    {"name": "vm", "status": "passing", "output": "disk 12% used, load 0.10"},
    {"name": "pg", "status": "warning", "output": "connections 90/100"},
    {"name": "role", "status": "passing", "output": "leader"}])");
  c["status"]["instances"][1]["checks"] = Json::parse(R"([
    {"name": "pg", "state": "critical", "output": "not streaming"}])");
  return c;  // db-3 reports none
}

TEST(ChecksReport, OneRowPerCheckAndADashRowForAnInstanceWithout) {
  Json report = ChecksReport(WithChecks());
  ASSERT_EQ(report["checks"].size(), 5u);
  EXPECT_EQ(report["checks"][1]["instance"], "db-1");
  EXPECT_EQ(report["checks"][1]["status"], "warning");
  EXPECT_EQ(report["checks"][3]["status"], "critical");  // "state" read as "status"
  EXPECT_TRUE(report["checks"][4]["name"].is_null());
  std::string text = RenderChecksText(report);
  EXPECT_THAT(text, HasSubstr("Health checks of data/db\n"));
  EXPECT_THAT(text, HasSubstr("INSTANCE   ROLE      NAME   STATUS     OUTPUT\n"));
  EXPECT_THAT(text, HasSubstr("db-1       primary   pg     warning    connections 90/100\n"));
  EXPECT_THAT(text, HasSubstr("db-3       replica   -      -          -\n"));
}

TEST(ChecksSummary, CountsLikeFlyStatusAndDashesWhenAbsent) {
  Json report = StatusReport({WithChecks(), {}, {}, {}, ""});
  EXPECT_EQ(ChecksSummary(report["instances"][0]["checks"]), "3 total, 2 passing, 1 warning");
  EXPECT_EQ(ChecksSummary(report["instances"][1]["checks"]), "1 total, 1 critical");
  EXPECT_EQ(ChecksSummary(report["instances"][2]["checks"]), "-");
  EXPECT_THAT(RenderStatusText(report), HasSubstr("3 total, 2 passing, 1 warning"));
}

// ---- switchover ----------------------------------------------------------------------------

Json Switchable() {
  Json c = Cluster();
  c["status"]["instances"][2]["ready"] = true;
  c["status"]["instances"][0]["lsn"] = "0/5000000";
  c["status"]["instances"][1]["lsn"] = "0/4FFFFFF";
  c["status"]["instances"][2]["lsn"] = "1/0";
  return c;
}

TEST(ChooseSwitchoverTarget, WithoutToPicksTheReadyReplicaWithTheHighestLsn) {
  auto target = ChooseSwitchoverTarget(Switchable(), "");
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  EXPECT_EQ(*target, "db-3");
  Json c = Switchable();
  c["status"]["instances"][2]["ready"] = false;
  EXPECT_EQ(ChooseSwitchoverTarget(c, "").value(), "db-2");
}

TEST(ChooseSwitchoverTarget, EqualLsnsFallBackToLagThenName) {
  Json c = Switchable();
  c["status"]["instances"][1]["lsn"] = "1/0";
  c["status"]["instances"][2]["lagBytes"] = 10;  // db-2 lags 2048
  EXPECT_EQ(ChooseSwitchoverTarget(c, "").value(), "db-3");
  c["status"]["instances"][2]["lagBytes"] = 2048;
  EXPECT_EQ(ChooseSwitchoverTarget(c, "").value(), "db-2");
}

struct SwitchoverCase {
  const char* name;
  std::function<void(Json&)> change;
  std::string to;
  Code code;
  std::string message;
};

class ChooseSwitchoverRejects : public ::testing::TestWithParam<SwitchoverCase> {};

TEST_P(ChooseSwitchoverRejects, WithAClearMessage) {
  Json c = Switchable();
  GetParam().change(c);
  auto target = ChooseSwitchoverTarget(c, GetParam().to);
  ASSERT_FALSE(target.ok());
  EXPECT_EQ(target.status().code(), GetParam().code);
  EXPECT_THAT(target.status().message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ChooseSwitchoverRejects,
    ::testing::Values(
        SwitchoverCase{"Unknown", [](Json&) {}, "db-9", Code::kNotFound,
                       "cluster db has no instance \"db-9\" (instances: db-1, db-2, db-3)"},
        SwitchoverCase{"Primary", [](Json&) {}, "db-1", Code::kInvalid,
                       "db-1 is already the primary of cluster db"},
        SwitchoverCase{"NotReady",
                       [](Json& c) { c["status"]["instances"][2]["ready"] = false; }, "db-3",
                       Code::kUnavailable, "instance db-3 is not ready (phase Starting)"},
        SwitchoverCase{"NoPrimary", [](Json& c) { c["status"].erase("currentPrimary"); }, "",
                       Code::kUnavailable, "cluster db has no primary yet"},
        SwitchoverCase{"InProgress", [](Json& c) { c["status"]["targetPrimary"] = "db-2"; }, "",
                       Code::kUnavailable, "a switchover from db-1 to db-2 is already under way"},
        SwitchoverCase{"NoReadyReplica",
                       [](Json& c) {
                         c["status"]["instances"][1]["ready"] = false;
                         c["status"]["instances"][2]["ready"] = false;
                       },
                       "", Code::kUnavailable, "cluster db has no ready replica to switch over to"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(EvaluateSwitchover, InProgressThenDoneOrAborted) {
  Json c = Switchable();
  c["status"]["targetPrimary"] = "db-2";
  c["status"]["phase"] = "SwitchingOver";
  c["status"]["phaseReason"] = "Waiting for db-1 to stop (fenced)";
  auto p = EvaluateSwitchover(c, "db-2");
  EXPECT_EQ(p.state, SwitchoverState::kInProgress);
  EXPECT_THAT(p.message, HasSubstr("Waiting for db-1 to stop"));

  c["status"]["currentPrimary"] = "db-2";
  c["status"]["instances"][1]["role"] = "primary";
  c["status"]["instances"][1]["ready"] = false;
  EXPECT_EQ(EvaluateSwitchover(c, "db-2").state, SwitchoverState::kInProgress);
  c["status"]["instances"][1]["ready"] = true;
  EXPECT_EQ(EvaluateSwitchover(c, "db-2").state, SwitchoverState::kDone);

  Json aborted = Switchable();
  aborted["status"]["targetPrimary"] = "db-1";
  auto a = EvaluateSwitchover(aborted, "db-2");
  EXPECT_EQ(a.state, SwitchoverState::kAborted);
  EXPECT_THAT(a.message, HasSubstr("did not carry out the switchover"));
}

// ---- logs ----------------------------------------------------------------------------------

Json Pod(const std::string& name, std::vector<std::string> containers) {
  Json list = Json::array();
  for (const auto& c : containers) list.push_back({{"name", c}});
  return {{"metadata", {{"name", name}}}, {"spec", {{"containers", list}}}};
}

TEST(LogSources, PrefersThePostgresContainerAndSortsByName) {
  auto all = LogSources("db", {Pod("db-2", {"sidecar", "postgres"}), Pod("db-1", {"main"})}, "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].pod, "db-1");
  EXPECT_EQ((*all)[0].container, "main");
  EXPECT_EQ((*all)[1].container, "postgres");
  auto one = LogSources("db", {Pod("db-1", {"postgres"}), Pod("db-2", {"postgres"})}, "db-2");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].pod, "db-2");
  EXPECT_EQ(PodLogPath("data", (*one)[0], 20, LogFollow::kYes),
            "/api/v1/namespaces/data/pods/db-2/log?container=postgres&tailLines=20&follow=true");
  EXPECT_EQ(PodLogPath("data", (*one)[0], -1, LogFollow::kNo),
            "/api/v1/namespaces/data/pods/db-2/log?container=postgres");
}

TEST(LogSources, UnknownInstanceOrNoPodsSayWhatExists) {
  auto unknown = LogSources("db", {Pod("db-1", {"postgres"})}, "db-7");
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("no instance \"db-7\" (instances: db-1)"));
  auto none = LogSources("db", {}, "");
  EXPECT_THAT(none.status().message(), HasSubstr("cluster db has no Pods yet"));
}

}  // namespace
}  // namespace petrel::plugin
