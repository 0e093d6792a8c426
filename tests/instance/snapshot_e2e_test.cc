// End-to-end tests of snapshots and restores with `petrel instance` processes (PETREL_BINARY)
// and real PostgreSQL 15: POST /snapshot of a streaming replica, a new cluster restored from
// that copy (bootstrap snapshot) and re-keyed with its own passwords, and the refusal of
// another cluster's data. Runs as root in CI, so postgres runs as the postgres user.
#include <gtest/gtest.h>

#include "tests/instance/instance_process.h"

namespace petrel {
namespace e2e {
namespace {

const Passwords kSourcePasswords{"source-super-pw", "source-repl-pw"};
const Passwords kRestoredPasswords{"restored-super-pw", "restored-repl-pw"};

// An instance of the source or the restored cluster, with that cluster's passwords.
InstanceOptions WithPasswords(const Passwords& passwords) {
  InstanceOptions options;
  options.passwords = passwords;
  return options;
}

class SnapshotE2eTest : public InstanceProcessTest {
 protected:
  SnapshotE2eTest() : InstanceProcessTest("petrel-snap-e2e") {}
};

TEST_F(SnapshotE2eTest, SnapshotOfAReplicaRestoresAsARekeyedNewCluster) {
  InstanceProcess a("src-1", LoopbackAddress(1), dir_.path(), WithPasswords(kSourcePasswords));
  InstanceProcess b("src-2", LoopbackAddress(2), dir_.path(), WithPasswords(kSourcePasswords));
  a.Start();
  b.Start();

  // The source cluster: a primary and a streaming replica, recorded as cluster "uid-source".
  InstanceSpec pa;
  pa.generation = 1;
  pa.role = InstanceRole::kPrimary;
  pa.bootstrap = BootstrapMethod::kInitdb;
  pa.replication_slots = {"src_2"};
  pa.cluster_uid = "uid-source";
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_TRUE(WaitFor([&] { return a.Status().cluster_uid == "uid-source"; }, seconds(10)));
  {
    auto c = a.Connect("postgres", kSourcePasswords.superuser);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->ExecScript("CREATE TABLE t (id int primary key); "
                              "INSERT INTO t SELECT generate_series(1, 3);")
                    .ok());
  }
  InstanceSpec pb;
  pb.generation = 1;
  pb.role = InstanceRole::kReplica;
  pb.bootstrap = BootstrapMethod::kClone;
  pb.primary = a.endpoint();
  pb.slot_name = "src_2";
  pb.cluster_uid = "uid-source";
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kReplica, 1)) << b.Log();
  ASSERT_TRUE(WaitFor([&] { return b.Query("SELECT count(*) FROM t") == "3"; }, seconds(30)));

  // A snapshot of the replica, so the primary is not disturbed.
  const std::string snap = dir_.path() + "/snapshots/one";
  HttpResponse taken = b.Snapshot(snap);
  ASSERT_EQ(taken.status, 200) << taken.body << b.Log();
  auto info = SnapshotInfo::FromJson(Json::parse(taken.body, nullptr, false));
  ASSERT_TRUE(info.ok()) << taken.body;
  EXPECT_GT(info->size_bytes, 1000000);
  uint64_t lsn = 0;
  EXPECT_TRUE(ParseLsn(info->lsn, &lsn)) << info->lsn;
  EXPECT_EQ(info->pg_major, 15);
  EXPECT_EQ(info->pg_version.substr(0, 3), "15.");
  EXPECT_EQ(info->system_identifier, a.Status().system_identifier);
  EXPECT_EQ(info->timeline, 1);
  EXPECT_TRUE(fs::exists(snap + "/PG_VERSION"));
  EXPECT_TRUE(fs::exists(snap + "/petrel_cluster_uid"));

  // Bad requests change nothing.
  EXPECT_EQ(b.Snapshot(snap).status, 409);  // not empty
  EXPECT_EQ(b.Snapshot("relative/dir").status, 400);

  // Rows written after the snapshot must not appear in the restore.
  ASSERT_FALSE(a.Query("INSERT INTO t VALUES (4), (5) RETURNING 1").empty());

  // A new cluster restored from the snapshot, with its own passwords.
  InstanceProcess r("new-1", LoopbackAddress(3), dir_.path(), WithPasswords(kRestoredPasswords));
  r.Start();
  InstanceSpec pr;
  pr.generation = 1;
  pr.role = InstanceRole::kPrimary;
  pr.bootstrap = BootstrapMethod::kSnapshot;
  pr.snapshot_path = snap;
  pr.cluster_uid = "uid-restored";
  ASSERT_EQ(r.PutSpec(pr).status, 202);
  ASSERT_TRUE(r.WaitReady(InstanceRole::kPrimary, 1, seconds(120))) << r.Log();
  EXPECT_EQ(r.Status().cluster_uid, "uid-restored");
  EXPECT_EQ(r.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "1,2,3");
  EXPECT_EQ(r.Query("SELECT count(*) FROM pg_replication_slots"), "0");
  EXPECT_EQ(r.Query("SELECT pg_is_in_recovery()"), "f");
  EXPECT_FALSE(fs::exists(r.pgdata() + "/standby.signal"));
  // The new passwords work, the source's do not.
  EXPECT_TRUE(r.Connect("postgres", kRestoredPasswords.superuser).ok());
  EXPECT_TRUE(r.Connect(kReplicationUser, kRestoredPasswords.replication).ok());
  auto old_su = r.Connect("postgres", kSourcePasswords.superuser);
  EXPECT_FALSE(old_su.ok());
  EXPECT_NE(old_su.status().message().find("password authentication failed"), std::string::npos)
      << old_su.status().message();
  EXPECT_FALSE(r.Connect(kReplicationUser, kSourcePasswords.replication).ok());

  // The source is untouched.
  EXPECT_EQ(a.Query("SELECT count(*) FROM t"), "5");
  EXPECT_EQ(a.Status().cluster_uid, "uid-source");
  EXPECT_TRUE(a.Connect("postgres", kSourcePasswords.superuser).ok());
  EXPECT_EQ(a.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'src_2'"), "t");

  // A replica of the restored cluster clones with the restored replication password.
  InstanceProcess r2("new-2", LoopbackAddress(4), dir_.path(), WithPasswords(kRestoredPasswords));
  r2.Start();
  InstanceSpec pr2;
  pr2.generation = 1;
  pr2.role = InstanceRole::kReplica;
  pr2.bootstrap = BootstrapMethod::kClone;
  pr2.primary = r.endpoint();
  pr2.cluster_uid = "uid-restored";
  ASSERT_EQ(r2.PutSpec(pr2).status, 202);
  ASSERT_TRUE(r2.WaitReady(InstanceRole::kReplica, 1)) << r2.Log();
  EXPECT_EQ(r2.Status().cluster_uid, "uid-restored");

  // Data of one cluster is refused for another without bootstrap snapshot; nothing changes.
  InstanceSpec other = pr;
  other.generation = 2;
  other.bootstrap = BootstrapMethod::kInitdb;
  other.snapshot_path.clear();
  other.cluster_uid = "uid-other";
  HttpResponse refused = r.PutSpec(other);
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.find("uid-restored"), std::string::npos) << refused.body;
  InstanceStatus after = r.Status();
  EXPECT_EQ(after.phase, "refused");
  EXPECT_NE(after.message.find("another cluster"), std::string::npos) << after.message;
  EXPECT_TRUE(after.running);
  EXPECT_EQ(after.cluster_uid, "uid-restored");
  HttpResponse spec = r.Call("GET", "/spec");
  EXPECT_NE(spec.body.find("uid-restored"), std::string::npos);
}

}  // namespace
}  // namespace e2e
}  // namespace petrel
