// End-to-end tests of the leadership lease (issue 8) on `petrel instance` processes against
// real PostgreSQL 15: a leased primary stays writable while renewed or confirmed by its
// peers, fences itself (immediate shutdown) when neither happens, keeps postgres down across
// a restart until a lease arrives, and fences on thaw after a freeze longer than the lease.
// No timing assertions: every wait is a bounded poll.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/instance/instance_process.h"

namespace petrel {
namespace e2e {
namespace {

constexpr int64_t kLeaseMs = 1000;

// The controller's side, reduced to its renewals: PUT /lease every 200 ms while enabled.
class Renewer {
 public:
  Renewer(InstanceProcess& instance, int64_t term) : instance_(instance), term_(term) {
    thread_ = std::thread([this] {
      while (!stop_) {
        if (enabled_) {
          HttpResponse r =
              instance_.Call("PUT", "/lease", LeaseGrant{term_, kLeaseMs}.ToJson().dump());
          if (r.status == 200) ++granted_;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  ~Renewer() {
    stop_ = true;
    thread_.join();
  }
  void Enable(bool on) { enabled_ = on; }
  int granted() const { return granted_; }

 private:
  InstanceProcess& instance_;
  int64_t term_;
  std::atomic<bool> stop_{false}, enabled_{true};
  std::atomic<int> granted_{0};
  std::thread thread_;
};

InstanceSpec LeasedPrimary(int64_t term, std::vector<Peer> peers = {}) {
  InstanceSpec s;
  s.generation = 1;
  s.role = InstanceRole::kPrimary;
  s.bootstrap = BootstrapMethod::kInitdb;
  s.term = term;
  s.lease_duration_ms = kLeaseMs;
  s.peers = std::move(peers);
  return s;
}

// An insert through a fresh connection; true when it committed.
bool Insert(InstanceProcess& instance, int id) {
  auto c = instance.Sql();
  if (!c.ok()) return false;
  return c->Exec("INSERT INTO t VALUES ($1)", {std::to_string(id)}).ok();
}

bool FencedByLease(InstanceProcess& instance, int64_t term) {
  InstanceStatus s = instance.Status();
  return s.phase == "fenced" && s.fenced && !s.running && !s.ready && s.term == term &&
         s.lease_remaining_ms == 0 && s.message.find("lease") != std::string::npos;
}

class LeaseE2eTest : public InstanceProcessTest {};

TEST_F(LeaseE2eTest, ThePrimaryRunsOnlyWhileItHoldsALease) {
  InstanceProcess a("db-1", LoopbackAddress(11), dir_.path());
  a.Start();
  ASSERT_EQ(a.PutSpec(LeasedPrimary(1)).status, 202);
  // Grants of another term, or before a spec of that term, are refused.
  HttpResponse wrong = a.Call("PUT", "/lease", LeaseGrant{2, kLeaseMs}.ToJson().dump());
  EXPECT_EQ(wrong.status, 409);
  EXPECT_NE(wrong.body.find("accepted spec is for term 1"), std::string::npos) << wrong.body;

  {
    Renewer renewer(a, 1);
    ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
    EXPECT_GT(a.Status().lease_remaining_ms, 0);
    EXPECT_EQ(a.Status().term, 1);
    {
      auto c = a.Sql();
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      ASSERT_TRUE(c->ExecScript("CREATE TABLE t (id int primary key)").ok());
    }
    ASSERT_TRUE(Insert(a, 1));

    // The controller stops renewing: writes stop and the status says why.
    renewer.Enable(false);
    int id = 2;
    EXPECT_TRUE(WaitFor([&] { return !Insert(a, id++); }, seconds(30))) << a.Log();
    EXPECT_TRUE(WaitFor([&] { return FencedByLease(a, 1); }, seconds(30)))
        << a.Status().ToJson().dump() << a.Log();
    EXPECT_EQ(a.Call("GET", "/readyz").status, 503);
    // It stays down (no restart with backoff as after a crash).
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLeaseMs));
    EXPECT_FALSE(Insert(a, 1000));
    EXPECT_TRUE(FencedByLease(a, 1)) << a.Status().ToJson().dump();

    // The expired lease is never revived for term 1 ...
    HttpResponse late = a.Call("PUT", "/lease", LeaseGrant{1, kLeaseMs}.ToJson().dump());
    EXPECT_EQ(late.status, 409) << late.body;
    EXPECT_NE(late.body.find("never revived"), std::string::npos) << late.body;
  }
  // ... the controller moves to term 2: postgres comes back with every committed row.
  InstanceSpec term2 = LeasedPrimary(2);
  term2.generation = 2;
  ASSERT_EQ(a.PutSpec(term2).status, 202);
  {
    Renewer renewer(a, 2);
    ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 2)) << a.Log();
    EXPECT_TRUE(Insert(a, 2000));
    EXPECT_EQ(a.Query("SELECT count(*) FROM t WHERE id IN (1, 2000)"), "2");
  }

  // A restart resumes from the saved spec but does not start postgres without a lease.
  ASSERT_EQ(a.Terminate(), 0) << a.Log();
  a.Start();
  EXPECT_TRUE(WaitFor([&] { return FencedByLease(a, 2); }, seconds(30)))
      << a.Status().ToJson().dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLeaseMs));
  EXPECT_FALSE(a.Sql().ok()) << "postgres accepts connections without a lease";
  EXPECT_TRUE(FencedByLease(a, 2)) << a.Status().ToJson().dump();
  Renewer renewer(a, 2);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 2)) << a.Log();
  EXPECT_EQ(a.Query("SELECT count(*) FROM t WHERE id IN (1, 2000)"), "2");
}

TEST_F(LeaseE2eTest, PeersKeepThePrimaryUpUntilOneMovesToANewTerm) {
  InstanceProcess a("db-1", LoopbackAddress(21), dir_.path());
  InstanceProcess b("db-2", LoopbackAddress(22), dir_.path());
  a.Start();
  b.Start();
  InstanceSpec pa = LeasedPrimary(1, {b.peer()});
  pa.replication_slots = {"db_2"};
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  Renewer renewer(a, 1);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  {
    auto c = a.Sql();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->ExecScript("CREATE TABLE t (id int primary key)").ok());
  }

  InstanceSpec pb;
  pb.generation = 1;
  pb.role = InstanceRole::kReplica;
  pb.bootstrap = BootstrapMethod::kClone;
  pb.primary = a.endpoint();
  pb.slot_name = "db_2";
  pb.term = 1;
  pb.peers = {a.peer()};
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kReplica, 1)) << b.Log();

  // The controller goes away; the replica's confirmations keep the primary writable for
  // several lease durations.
  renewer.Enable(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a renewal in flight lands
  const int granted = renewer.granted();
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(4 * kLeaseMs);
  int id = 1, committed = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (Insert(a, id++)) ++committed;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(committed, id - 1) << a.Log();
  EXPECT_EQ(renewer.granted(), granted);
  InstanceStatus s = a.Status();
  EXPECT_TRUE(s.ready) << s.ToJson().dump();
  EXPECT_GT(s.lease_remaining_ms, 0);

  // The controller moves the replica to term 2: it stops confirming and the primary fences.
  pb.generation = 2;
  pb.term = 2;
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  EXPECT_TRUE(WaitFor([&] { return !Insert(a, id++); }, seconds(30))) << a.Log();
  EXPECT_TRUE(WaitFor([&] { return FencedByLease(a, 1); }, seconds(30)))
      << a.Status().ToJson().dump() << a.Log();
  // Confirmation is never given for another term.
  HttpResponse r = b.Call("POST", "/confirm-leader", PeerConfirmRequest{1, "db-1"}.ToJson().dump());
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"confirmed\":false"), std::string::npos) << r.body;
}

TEST_F(LeaseE2eTest, AFrozenPrimaryCannotCommitAfterItThaws) {
  InstanceProcess a("db-1", LoopbackAddress(31), dir_.path());
  a.Start();
  ASSERT_EQ(a.PutSpec(LeasedPrimary(1)).status, 202);
  auto renewer = std::make_unique<Renewer>(a, 1);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  auto conn = a.Sql();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(
      conn->ExecScript("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)").ok());

  // Freeze the whole pod: `petrel instance` and postgres with all its children (the
  // postmaster first, so that it forks nothing new meanwhile).
  const pid_t instance_group = a.pid();
  const std::vector<pid_t> postgres = a.PostgresPids();
  ASSERT_GT(postgres.size(), 3u);  // postmaster, checkpointer, ..., our backend
  ASSERT_EQ(kill(-instance_group, SIGSTOP), 0);
  for (pid_t pid : postgres) ASSERT_EQ(kill(pid, SIGSTOP), 0);
  renewer.reset();  // the controller's renewals fail while it is frozen
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * kLeaseMs));
  // Thaw postgres first, so nothing but the watchdog's own speed stands in the way.
  for (auto it = postgres.rbegin(); it != postgres.rend(); ++it) kill(*it, SIGCONT);
  ASSERT_EQ(kill(-instance_group, SIGCONT), 0);
  Status write = conn->Exec("INSERT INTO t VALUES (2)").status();
  EXPECT_FALSE(write.ok()) << "a write committed on a primary whose lease had expired";

  EXPECT_TRUE(WaitFor([&] { return FencedByLease(a, 1); }, seconds(30)))
      << a.Status().ToJson().dump() << a.Log();
  // A grant of the expired term is never honoured; the next term brings it back.
  InstanceSpec term2 = LeasedPrimary(2);
  term2.generation = 2;
  ASSERT_EQ(a.PutSpec(term2).status, 202);
  Renewer again(a, 2);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 2)) << a.Log();
  EXPECT_EQ(a.Query("SELECT count(*) FROM t WHERE id = 2"), "0");
  EXPECT_EQ(a.Query("SELECT count(*) FROM t WHERE id = 1"), "1");
}

}  // namespace
}  // namespace e2e
}  // namespace petrel
