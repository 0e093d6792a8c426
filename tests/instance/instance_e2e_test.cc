// End-to-end tests of `petrel instance` as a process (PETREL_BINARY) against real
// PostgreSQL 15: bootstrap, streaming replication, promotion and rewind, fencing, crash
// recovery, shutdown, and the API's handling of bad input. Run as root in CI, so the drop of
// privileges to the postgres user is exercised. Each instance gets its own loopback address.
#include <gtest/gtest.h>

#include "tests/instance/instance_process.h"

namespace petrel {
namespace e2e {
namespace {

class InstanceE2eTest : public InstanceProcessTest {};

TEST_F(InstanceE2eTest, ReplicatesPromotesRewindsFencesAndRecovers) {
  InstanceProcess a("db-1", LoopbackAddress(1), dir_.path());
  InstanceProcess b("db-2", LoopbackAddress(2), dir_.path());
  a.Start();
  b.Start();

  // Bad input changes nothing.
  InstanceSpec pa;
  pa.generation = 1;
  pa.role = InstanceRole::kPrimary;
  pa.bootstrap = BootstrapMethod::kInitdb;
  pa.replication_slots = {"db_2"};
  EXPECT_EQ(a.Call("PUT", "/spec", pa.ToJson().dump(), "").status, 401);
  EXPECT_EQ(a.Call("PUT", "/spec", pa.ToJson().dump(), "wrong-token").status, 401);
  HttpResponse bad = a.Call("PUT", "/spec", "{not json");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("not valid JSON"), std::string::npos) << bad.body;
  HttpResponse invalid = a.Call("PUT", "/spec", R"({"role":"leader"})");
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("leader"), std::string::npos) << invalid.body;
  EXPECT_EQ(a.Call("GET", "/spec").status, 404);
  EXPECT_EQ(a.Call("GET", "/readyz").status, 503);

  // Primary from initdb.
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_EQ(a.Call("GET", "/readyz").status, 200);
  EXPECT_EQ(a.Query("SHOW data_checksums"), "on");
  EXPECT_EQ(a.Query("SELECT rolreplication FROM pg_roles WHERE rolname = 'streaming_replica'"),
            "t");
  {
    auto c = a.Sql();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(
        c->ExecScript("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1);").ok());
  }

  // Replica cloned from it, streaming through its slot.
  InstanceSpec pb;
  pb.generation = 1;
  pb.role = InstanceRole::kReplica;
  pb.bootstrap = BootstrapMethod::kClone;
  pb.primary = a.endpoint();
  pb.slot_name = "db_2";
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kReplica, 1)) << b.Log();
  EXPECT_TRUE(WaitFor([&] { return b.Query("SELECT count(*) FROM t") == "1"; }, seconds(30)));
  EXPECT_EQ(a.Query("SELECT state FROM pg_stat_replication WHERE application_name = 'db-2'"),
            "streaming");
  EXPECT_EQ(a.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'db_2'"), "t");
  InstanceStatus sb = b.Status();
  EXPECT_EQ(sb.system_identifier, a.Status().system_identifier);
  EXPECT_EQ(sb.following, a.endpoint().host + ":" + std::to_string(a.endpoint().port));

  // GET /status reports the replica's WAL positions as they are now, not as of the converge
  // loop's last tick (a failover chooses among standbys on these numbers).
  for (int round = 0; round < 5; ++round) {
    std::string written = a.Query(
        "WITH w AS (INSERT INTO t VALUES (" + std::to_string(1000 + round) +
        ") RETURNING 1) SELECT pg_current_wal_lsn() FROM w");
    uint64_t want = 0;
    ASSERT_TRUE(ParseLsn(written, &want)) << written;
    ASSERT_TRUE(WaitFor(
        [&] {
          uint64_t got = 0;
          return ParseLsn(b.Query("SELECT pg_last_wal_receive_lsn()"), &got) && got >= want;
        },
        seconds(10)));
    uint64_t received = 0;
    InstanceStatus now = b.Status();
    ASSERT_TRUE(ParseLsn(now.received_lsn, &received)) << now.received_lsn;
    EXPECT_GE(received, want) << "round " << round << ": status says " << now.received_lsn
                              << ", postgres received " << written;
  }
  ASSERT_TRUE(a.Sql()->ExecScript("DELETE FROM t WHERE id >= 1000").ok());

  // A stale generation is refused with 409 and changes nothing.
  InstanceSpec stale = pb;
  stale.generation = 0;
  EXPECT_EQ(b.PutSpec(stale).status, 409);

  // Promote the replica while the old primary still runs, then make the old primary follow:
  // its timeline has diverged, so it must be rewound.
  pb.generation = 2;
  pb.role = InstanceRole::kPrimary;
  pb.replication_slots = {"db_1"};
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kPrimary, 2)) << b.Log();
  EXPECT_GE(b.Status().timeline, 2);
  // The slot of the instance that will follow was there before the promotion: a replica told
  // to follow b during its promotion finds it (a missing slot costs wal_retrieve_retry_interval).
  EXPECT_NE(b.Log().find("creating replication slot db_1 before the promotion"), std::string::npos)
      << b.Log();
  EXPECT_EQ(b.Query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'db_1'"), "1");
  // The promoted instance checkpoints on its new timeline at once: pg_rewind reads a source's
  // timeline from its last checkpoint and would otherwise rewind nothing onto it.
  EXPECT_TRUE(WaitFor(
      [&] { return b.Query("SELECT timeline_id FROM pg_control_checkpoint()") == "2"; },
      seconds(30)));
  EXPECT_NE(b.Log().find("checkpoint: checkpoint on the new timeline"), std::string::npos);
  ASSERT_TRUE(b.Sql().ok());
  {
    auto c = b.Sql();
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (2)").ok());
  }
  {
    // Written on the old primary after the promotion: it is on the abandoned timeline.
    auto c = a.Sql();
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (100)").ok());
  }

  pa.generation = 2;
  pa.role = InstanceRole::kReplica;
  pa.primary = b.endpoint();
  pa.slot_name = "db_1";
  pa.replication_slots = {};
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 2)) << a.Log();
  {
    auto c = b.Sql();
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (3)").ok());
  }
  EXPECT_TRUE(WaitFor(
      [&] { return a.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t") == "1,2,3"; },
      seconds(30)))
      << a.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
  EXPECT_EQ(b.Query("SELECT state FROM pg_stat_replication WHERE application_name = 'db-1'"),
            "streaming");
  EXPECT_EQ(a.Status().timeline, b.Status().timeline);
  EXPECT_EQ(b.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'db_1'"), "t");
  // The slot the old primary kept for db-2 would hold WAL on the new replica forever.
  EXPECT_TRUE(WaitFor([&] { return a.Query("SELECT count(*) FROM pg_replication_slots") == "0"; },
                      seconds(30)));
  // Rewound in place: no data directory was moved aside for a re-clone.
  for (const auto& e : fs::directory_iterator(a.volume())) {
    EXPECT_EQ(e.path().filename().string().rfind("pgdata.", 0), std::string::npos)
        << e.path() << "\n"
        << a.Status().message;
  }

  // Fence stops postgres and keeps it stopped; unfence starts it again.
  pa.generation = 3;
  pa.fenced = true;
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(WaitFor(
      [&] {
        InstanceStatus s = a.Status();
        return s.fenced && !s.running;
      },
      seconds(60)))
      << a.Log();
  EXPECT_FALSE(a.Sql().ok());
  EXPECT_EQ(a.Call("GET", "/readyz").status, 503);
  pa.generation = 4;
  pa.fenced = false;
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 4)) << a.Log();

  // kill -9 of the postgres child: the supervisor restarts it.
  pid_t victim = b.PostmasterPid();
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        pid_t p = b.PostmasterPid();
        return p > 0 && p != victim;
      },
      seconds(60)))
      << b.Log();
  ASSERT_TRUE(b.WaitReady(InstanceRole::kPrimary, 2)) << b.Log();
  {
    auto c = b.Sql();
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->ExecScript("INSERT INTO t VALUES (4)").ok());
  }
  EXPECT_TRUE(
      WaitFor([&] { return a.Query("SELECT count(*) FROM t WHERE id = 4") == "1"; }, seconds(30)));

  // SIGTERM: clean shutdown and exit 0; a restart resumes from the saved spec alone.
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_FALSE(fs::exists(a.pgdata() + "/postmaster.pid"));
  a.Start();
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 4)) << a.Log();
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_EQ(b.Terminate(), 0);
  EXPECT_FALSE(fs::exists(b.pgdata() + "/postmaster.pid"));
  // Secrets never reach the logs.
  for (const std::string& log : {a.Log(), b.Log()}) {
    EXPECT_EQ(log.find(kSuperPassword), std::string::npos);
    EXPECT_EQ(log.find(kReplPassword), std::string::npos);
    EXPECT_EQ(log.find(kToken), std::string::npos);
  }
}

Result<CommandResult> RunPetrel(std::vector<std::string> args, std::vector<std::string> env) {
  Command c;
  c.argv = {Binary(), "instance"};
  for (auto& a : args) c.argv.push_back(std::move(a));
  c.env = std::move(env);
  return RunCommand(c, seconds(30));
}

// spec.initdb reaches initdb (encoding, locale, checksums) and creates the application
// database owned by a NOLOGIN role; the names are quoted, so any identifier works.
TEST_F(InstanceE2eTest, InitdbOptionsShapeTheNewCluster) {
  InstanceProcess a("db-1", LoopbackAddress(11), dir_.path());
  a.Start();
  InstanceSpec spec;
  spec.generation = 1;
  spec.role = InstanceRole::kPrimary;
  spec.bootstrap = BootstrapMethod::kInitdb;
  spec.initdb = InitdbOptions{"shop", "Shop \"Owner\"", "LATIN1", "C", false};
  ASSERT_EQ(a.PutSpec(spec).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_EQ(a.Query("SHOW data_checksums"), "off");
  EXPECT_EQ(a.Query("SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || "
                    "datctype FROM pg_database WHERE datname = 'template1'"),
            "LATIN1 C C");
  EXPECT_EQ(a.Query("SELECT pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) "
                    "FROM pg_database WHERE datname = 'shop'"),
            "Shop \"Owner\" LATIN1");
  EXPECT_EQ(a.Query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'Shop \"Owner\"'"), "f");
  // The owner owns the public schema of its database (pg_database_owner in Postgres 15).
  auto shop = PgConn::Connect(ConnInfo({{"host", a.endpoint().host},
                                        {"port", std::to_string(a.endpoint().port)},
                                        {"user", "postgres"},
                                        {"dbname", "shop"}}),
                              kSuperPassword);
  ASSERT_TRUE(shop.ok()) << shop.status().ToString();
  ASSERT_TRUE(
      shop->ExecScript("SET ROLE \"Shop \"\"Owner\"\"\"; CREATE TABLE items (id int)").ok());
  auto owner = shop->Exec("SELECT tableowner FROM pg_tables WHERE tablename = 'items'");
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(owner->GetOr(0, 0), "Shop \"Owner\"");
}

TEST_F(InstanceE2eTest, MissingBinariesAreAClearStartupError) {
  auto r = RunPetrel({"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata", "--listen-address",
                      LoopbackAddress(3), "--bin-dir", "/nonexistent/bin"},
                     {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
                      std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword,
                      std::string("PETREL_API_TOKEN=") + kToken});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_NE(r->output.find("binaries not found in /nonexistent/bin"), std::string::npos)
      << r->output;
  EXPECT_FALSE(fs::exists(dir_.path() + "/x")) << "a failed start must change nothing";
}

TEST_F(InstanceE2eTest, MissingSecretsAndWildcardAddressAreRefused) {
  auto no_token = RunPetrel({"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata",
                             "--listen-address", LoopbackAddress(3)},
                            {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
                             std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword});
  ASSERT_TRUE(no_token.ok());
  EXPECT_EQ(no_token->exit_code, 2);
  EXPECT_NE(no_token->output.find("PETREL_API_TOKEN is not set"), std::string::npos)
      << no_token->output;

  auto wildcard = RunPetrel(
      {"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata", "--listen-address", "0.0.0.0"},
      {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
       std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword,
       std::string("PETREL_API_TOKEN=") + kToken});
  ASSERT_TRUE(wildcard.ok());
  EXPECT_EQ(wildcard->exit_code, 2);
  EXPECT_NE(wildcard->output.find("not the wildcard"), std::string::npos) << wildcard->output;
}

}  // namespace
}  // namespace e2e
}  // namespace petrel
