// The kubectl plugin against a real PostgreSQL 15 as well as a real kube-apiserver: with the
// superuser Secret readable and the primary's Service at a loopback address (local mode),
// `users list` / `db list` read the live catalog, and `connect` runs the real psql.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/attachment.h"
#include "pg/attach_sql.h"
#include "pg/conn.h"
#include "tests/cli/plugin_fixture.h"
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

}  // namespace
}  // namespace petrel
