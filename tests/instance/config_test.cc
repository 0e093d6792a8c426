#include "instance/config.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

ConfigInputs Inputs() {
  return ConfigInputs{"db-2", "10.0.0.6", 5432, "/data/petrel/socket", "/data/petrel/pgpass"};
}

TEST(MemoryDefaultsTest, FollowsFlysFormulas) {
  auto m = MemoryDefaults(int64_t{4096} * 1024 * 1024);  // 4 GiB
  EXPECT_EQ(m["shared_buffers"], "1024MB");
  EXPECT_EQ(m["effective_cache_size"], "3072MB");
  EXPECT_EQ(m["work_mem"], "64MB");
  EXPECT_EQ(m["maintenance_work_mem"], "204MB");
  auto small = MemoryDefaults(int64_t{256} * 1024 * 1024);
  EXPECT_EQ(small["work_mem"], "4MB");               // floor of 4MB
  EXPECT_EQ(small["maintenance_work_mem"], "64MB");  // floor of 64MB
  EXPECT_TRUE(MemoryDefaults(0).empty());
}

TEST(DesiredParametersTest, UserParametersWinOverMemoryDefaults) {
  InstanceSpec s;
  s.role = InstanceRole::kPrimary;
  s.memory_limit_bytes = int64_t{4096} * 1024 * 1024;
  s.parameters = {{"shared_buffers", "512MB"}, {"max_connections", "50"}};
  auto p = DesiredParameters(s, Inputs());
  EXPECT_EQ(p["shared_buffers"], "512MB");
  EXPECT_EQ(p["effective_cache_size"], "3072MB");
  EXPECT_EQ(p["max_connections"], "50");
}

TEST(DesiredParametersTest, PetrelOwnsAddressingAndReplicationSettings) {
  InstanceSpec s;
  s.role = InstanceRole::kPrimary;
  s.synchronous_standby_names = "ANY 1 (\"db-2\")";
  auto p = DesiredParameters(s, Inputs());
  EXPECT_EQ(p["listen_addresses"], "10.0.0.6");
  EXPECT_EQ(p["port"], "5432");
  EXPECT_EQ(p["unix_socket_directories"], "/data/petrel/socket");
  EXPECT_EQ(p["unix_socket_permissions"], "0700");
  EXPECT_EQ(p["wal_level"], "replica");
  EXPECT_EQ(p["hot_standby"], "on");
  EXPECT_EQ(p["wal_log_hints"], "on");
  EXPECT_EQ(p["synchronous_standby_names"], "ANY 1 (\"db-2\")");
  EXPECT_EQ(p["primary_conninfo"], "");
}

TEST(DesiredParametersTest, ReplicaStreamsWithPassfileAndSlot) {
  InstanceSpec s;
  s.role = InstanceRole::kReplica;
  s.primary = Endpoint{"10.0.0.5", 5433};
  s.slot_name = "db_2";
  auto p = DesiredParameters(s, Inputs());
  EXPECT_EQ(p["primary_slot_name"], "db_2");
  const std::string& ci = p["primary_conninfo"];
  EXPECT_NE(ci.find("host='10.0.0.5'"), std::string::npos) << ci;
  EXPECT_NE(ci.find("port='5433'"), std::string::npos) << ci;
  EXPECT_NE(ci.find("user='streaming_replica'"), std::string::npos) << ci;
  EXPECT_NE(ci.find("passfile='/data/petrel/pgpass'"), std::string::npos) << ci;
  EXPECT_NE(ci.find("application_name='db-2'"), std::string::npos) << ci;
  EXPECT_EQ(ci.find("password="), std::string::npos) << ci;
}

TEST(RenderConfTest, QuotesValuesForPostgresqlConf) {
  std::string conf = RenderConf({{"a", "it's"}, {"b", "C:\\x"}, {"c", "8MB"}});
  EXPECT_NE(conf.find("a = 'it''s'\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("b = 'C:\\\\x'\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("c = '8MB'\n"), std::string::npos) << conf;
}

TEST(RenderHbaTest, UserLinesFirstThenPetrelRules) {
  InstanceSpec s;
  s.pg_hba = {"hostssl app app 10.0.0.0/8 scram-sha-256"};
  std::string hba = RenderHba(s);
  size_t user = hba.find("hostssl app app 10.0.0.0/8 scram-sha-256\n");
  size_t local = hba.find("local all postgres trust\n");
  size_t repl = hba.find("host replication streaming_replica 0.0.0.0/0 scram-sha-256\n");
  size_t all = hba.find("host all all 0.0.0.0/0 scram-sha-256\n");
  ASSERT_NE(user, std::string::npos);
  ASSERT_NE(local, std::string::npos);
  ASSERT_NE(repl, std::string::npos);
  ASSERT_NE(all, std::string::npos);
  EXPECT_LT(user, local);
  EXPECT_LT(local, repl);
  EXPECT_LT(repl, all);
  EXPECT_EQ(hba.find("trust", local + 25), std::string::npos) << "only the socket is trusted";
}

TEST(WithPetrelIncludeTest, AppendsOnceAndKeepsItLast) {
  std::string conf = "max_connections = 100\n";
  std::string once = WithPetrelInclude(conf);
  EXPECT_EQ(once.rfind("include 'petrel.conf'\n"), once.size() - 22);
  EXPECT_EQ(WithPetrelInclude(once), once);
  // A later setting would override petrel.conf: the include must move after it.
  std::string edited = once + "port = 7777\n";
  std::string fixed = WithPetrelInclude(edited);
  EXPECT_NE(fixed, edited);
  EXPECT_EQ(fixed.rfind("include 'petrel.conf'\n"), fixed.size() - 22);
  EXPECT_EQ(WithPetrelInclude(once + "# comment\n\n"), once + "# comment\n\n");
}

}  // namespace
}  // namespace petrel
