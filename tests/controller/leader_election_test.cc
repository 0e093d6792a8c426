#include "controller/leader_election.h"

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "tests/controller/fake_kube_client.h"

namespace petrel {
namespace {
using namespace std::chrono_literals;
using testing_support::FakeKubeClient;

// Runs a hook just before each Update reaches the fake (to interleave two candidates).
class HookedClient : public FakeKubeClient {
 public:
  Result<Json> Update(const ResourceType& type, const Json& object,
                      Subresource sub = Subresource::kNone) override {
    if (before_update) {
      auto hook = std::move(before_update);
      before_update = nullptr;
      hook();
    }
    return FakeKubeClient::Update(type, object, sub);
  }
  std::function<void()> before_update;
};

LeaderElectionConfig Config(const std::string& identity) {
  LeaderElectionConfig c;
  c.namespace_ = "petrel-system";
  c.name = "petrel-controller";
  c.identity = identity;
  return c;
}

Json Lease(KubeClient& client) {
  auto got = client.Get(resources::kLease, ObjectKey{"petrel-system", "petrel-controller"});
  return got.ok() ? (*got)["spec"] : Json();
}

class LeaderElectionTest : public testing::Test {
 protected:
  HookedClient fake_;
  FakeClock clock_;
  MetricsRegistry metrics_;
};

TEST_F(LeaderElectionTest, FirstCandidateCreatesTheLease) {
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  EXPECT_TRUE(a.TryAcquireOrRenew());
  Json spec = Lease(fake_);
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseDurationSeconds"], 15);
  EXPECT_EQ(spec["leaseTransitions"], 0);
  EXPECT_EQ(spec["renewTime"], "2026-01-01T00:00:00.000000Z");
}

TEST_F(LeaderElectionTest, HolderIsHonouredUntilItsLeaseExpiresByLocalObservation) {
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  LeaderElector b(fake_, Config("b"), {}, clock_, metrics_);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  EXPECT_FALSE(b.TryAcquireOrRenew());  // b first sees the record at t=0
  clock_.Advance(10s);
  ASSERT_TRUE(a.TryAcquireOrRenew());   // renewal changes the record
  clock_.Advance(4s);
  EXPECT_FALSE(b.TryAcquireOrRenew());  // b sees the change at t=14s
  clock_.Advance(14s);
  EXPECT_FALSE(b.TryAcquireOrRenew()) << "t=28s: 14s + 15s has not passed";
  EXPECT_EQ(b.ObservedHolder(), "a");
  clock_.Advance(2s);
  EXPECT_TRUE(b.TryAcquireOrRenew());
  Json spec = Lease(fake_);
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1);
  EXPECT_FALSE(a.TryAcquireOrRenew()) << "a must now honour b";
}

TEST_F(LeaderElectionTest, RenewalKeepsAcquireTimeAndTransitions) {
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  Json first = Lease(fake_);
  clock_.Advance(2s);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  Json second = Lease(fake_);
  EXPECT_EQ(second["acquireTime"], first["acquireTime"]);
  EXPECT_EQ(second["leaseTransitions"], 0);
  EXPECT_EQ(second["renewTime"], "2026-01-01T00:00:02.000000Z");
}

TEST_F(LeaderElectionTest, OfTwoCandidatesForAnExpiredLeaseOnlyOneWins) {
  LeaderElector old(fake_, Config("old"), {}, clock_, metrics_);
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  LeaderElector b(fake_, Config("b"), {}, clock_, metrics_);
  ASSERT_TRUE(old.TryAcquireOrRenew());
  EXPECT_FALSE(a.TryAcquireOrRenew());
  EXPECT_FALSE(b.TryAcquireOrRenew());
  clock_.Advance(16s);
  bool b_won = false;
  // a has read the expired lease; b takes it before a's update lands.
  fake_.before_update = [&] { b_won = b.TryAcquireOrRenew(); };
  bool a_won = a.TryAcquireOrRenew();
  EXPECT_TRUE(b_won);
  EXPECT_FALSE(a_won) << "a's update carried a stale resourceVersion";
  EXPECT_EQ(Lease(fake_)["holderIdentity"], "b");
}

TEST_F(LeaderElectionTest, ReleaseLetsASuccessorAcquireAtOnce) {
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  LeaderElector b(fake_, Config("b"), {}, clock_, metrics_);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  EXPECT_FALSE(b.TryAcquireOrRenew());
  ASSERT_TRUE(a.Release().ok());
  Json spec = Lease(fake_);
  EXPECT_EQ(spec["holderIdentity"], "");
  EXPECT_EQ(spec["leaseDurationSeconds"], 1);
  EXPECT_TRUE(b.TryAcquireOrRenew()) << "no waiting: the lease has no holder";
}

TEST_F(LeaderElectionTest, ReleaseByANonHolderChangesNothing) {
  LeaderElector a(fake_, Config("a"), {}, clock_, metrics_);
  LeaderElector b(fake_, Config("b"), {}, clock_, metrics_);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  int writes = fake_.writes;
  EXPECT_TRUE(b.Release().ok());
  EXPECT_EQ(fake_.writes, writes);
  EXPECT_EQ(Lease(fake_)["holderIdentity"], "a");
}

TEST_F(LeaderElectionTest, ConfigValidationExplainsTheRule) {
  LeaderElectionConfig c = Config("a");
  EXPECT_TRUE(c.Validate().ok());
  c.renew_deadline = 20s;
  Status s = c.Validate();
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_NE(s.message().find("lease-duration > renew-deadline > retry-period"), std::string::npos);
  c = Config("");
  EXPECT_EQ(c.Validate().code(), Code::kInvalid);
}

LeaderElectionConfig Fast(const std::string& identity) {
  LeaderElectionConfig c = Config(identity);
  c.lease_duration = 1000ms;
  c.renew_deadline = 400ms;
  c.retry_period = 50ms;
  return c;
}

TEST_F(LeaderElectionTest, RunLeadsUntilStoppedAndTheGaugeFollows) {
  std::atomic<bool> started{false};
  std::promise<StopReason> stopped;
  LeaderElector a(fake_, Fast("a"),
                  {[&] { started = true; }, [&](StopReason r) { stopped.set_value(r); }},
                  Clock::Real(), metrics_);
  auto run = std::async(std::launch::async, [&] { return a.Run(); });
  for (int i = 0; i < 500 && !started; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(started);
  EXPECT_TRUE(a.IsLeader());
  EXPECT_NE(metrics_.Expose().find("leader_election_master_status{name=\"petrel-controller\"} 1"),
            std::string::npos);
  a.Stop();
  EXPECT_EQ(run.get(), StopReason::kStopped);
  EXPECT_EQ(stopped.get_future().get(), StopReason::kStopped);
  EXPECT_FALSE(a.IsLeader());
  EXPECT_NE(metrics_.Expose().find("leader_election_master_status{name=\"petrel-controller\"} 0"),
            std::string::npos);
}

TEST_F(LeaderElectionTest, RunReportsLostLeadershipWhenRenewalsFailForTheRenewDeadline) {
  std::atomic<bool> started{false};
  LeaderElector a(fake_, Fast("a"), {[&] { started = true; }, nullptr}, Clock::Real(), metrics_);
  auto run = std::async(std::launch::async, [&] { return a.Run(); });
  for (int i = 0; i < 500 && !started; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(started);
  fake_.fail_updates = 1000000;
  ASSERT_EQ(run.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(run.get(), StopReason::kLost);
  EXPECT_FALSE(a.IsLeader());
}

}  // namespace
}  // namespace petrel
