#include "reconcilers/lease_keeper.h"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

namespace petrel {
namespace {

// An instance client whose PUT /lease answers are scripted; each call advances the fake clock
// by `latency` (how long the answer takes) and records the grant.
class ScriptedLeases : public InstanceClient {
 public:
  explicit ScriptedLeases(FakeClock& clock) : clock_(clock) {}

  Result<InstanceStatus> GetStatus(const Json&) override { return InstanceStatus{}; }
  Status PutSpec(const Json&, const InstanceSpec&) override { return Status::Ok(); }
  Result<LeaseReply> PutLease(const Json& pod, const LeaseGrant& grant, Millis timeout) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls.push_back({meta::Name(pod), grant.term, grant.duration_ms, timeout});
    if (mode == Mode::kTimeout) {
      clock_.Advance(timeout);
      return TimeoutError("PUT /lease to " + meta::Name(pod) + ": timed out");
    }
    clock_.Advance(latency);
    if (mode == Mode::kRefuse) return ConflictError("not the primary of term " + std::to_string(grant.term));
    return LeaseReply{grant.term, grant.duration_ms};
  }

  enum class Mode { kAnswer, kTimeout, kRefuse };
  struct Call {
    std::string pod;
    int64_t term;
    int64_t duration_ms;
    Millis timeout;
  };
  Mode mode = Mode::kAnswer;
  Millis latency{5};
  std::vector<Call> calls;

 private:
  FakeClock& clock_;
  std::mutex mu_;
};

Json Pod(const std::string& name) {
  return {{"metadata", {{"name", name}, {"namespace", "ns"}}}, {"status", {{"podIP", "10.0.0.1"}}}};
}

const ObjectKey kCluster{"ns", "db"};

struct Fixture {
  FakeClock clock;
  ScriptedLeases instances{clock};
  std::vector<ObjectKey> failed;
  LeaseKeeper keeper{instances, clock, [this] {
                       LeaseKeeperOptions o;
                       o.on_renewal_failed = [this](const ObjectKey& k) { failed.push_back(k); };
                       o.safety_margin = Millis(60);
                       return o;
                     }()};
};

TEST(LeaseKeeper, RenewsAtOnceThenEveryFifthOfTheDuration) {
  Fixture f;
  f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 3, 1000}, Pod("db-1"));
  ASSERT_EQ(f.instances.calls.size(), 1u) << "a new target is renewed before SetTarget returns";
  EXPECT_EQ(f.instances.calls[0].term, 3);
  EXPECT_EQ(f.instances.calls[0].duration_ms, 1000);
  EXPECT_EQ(f.instances.calls[0].timeout, Millis(200));

  f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 3, 1000}, Pod("db-1"));
  EXPECT_EQ(f.instances.calls.size(), 1u) << "the same target is not renewed again at once";
  f.clock.Advance(Millis(100));
  f.keeper.RenewDue();
  EXPECT_EQ(f.instances.calls.size(), 1u);
  f.clock.Advance(Millis(100));
  f.keeper.RenewDue();
  EXPECT_EQ(f.instances.calls.size(), 2u);

  // A new term (a promotion) is renewed at once; no target stops the renewals.
  f.keeper.SetTarget(kCluster, LeaseTarget{"db-2", 4, 1000}, Pod("db-2"));
  ASSERT_EQ(f.instances.calls.size(), 3u);
  EXPECT_EQ(f.instances.calls[2].pod, "db-2");
  f.keeper.SetTarget(kCluster, std::nullopt, Json());
  f.clock.Advance(Millis(1000));
  f.keeper.RenewDue();
  EXPECT_EQ(f.instances.calls.size(), 3u);
  EXPECT_TRUE(f.failed.empty());
}

TEST(LeaseKeeper, NothingIsRenewedWhileNotLeading) {
  FakeClock clock;
  ScriptedLeases instances(clock);
  LeaseKeeperOptions o;
  bool leading = false;
  o.leading = [&] { return leading; };
  LeaseKeeper keeper(instances, clock, o);
  keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
  size_t first = instances.calls.size();
  clock.Advance(Millis(500));
  keeper.RenewDue();
  EXPECT_EQ(instances.calls.size(), first);
  leading = true;
  keeper.RenewDue();
  EXPECT_EQ(instances.calls.size(), first + 1);
}

TEST(LeaseKeeper, AFailedRenewalEnqueuesTheClusterAndMarksTheInstance) {
  Fixture f;
  f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
  EXPECT_FALSE(f.keeper.Unanswered(kCluster, "db-1"));
  f.instances.mode = ScriptedLeases::Mode::kTimeout;
  f.clock.Advance(Millis(200));
  f.keeper.RenewDue();
  ASSERT_EQ(f.failed.size(), 1u);
  EXPECT_EQ(f.failed[0], kCluster);
  EXPECT_TRUE(f.keeper.Unanswered(kCluster, "db-1"));
  // Failing again does not wake the cluster again; a refusal is an answer.
  f.instances.mode = ScriptedLeases::Mode::kRefuse;
  f.clock.Advance(Millis(200));
  f.keeper.RenewDue();
  EXPECT_EQ(f.failed.size(), 1u);
  EXPECT_FALSE(f.keeper.Unanswered(kCluster, "db-1"));
  // Going silent after refusals wakes it (a refusing instance that then freezes).
  f.instances.mode = ScriptedLeases::Mode::kTimeout;
  f.clock.Advance(Millis(200));
  f.keeper.RenewDue();
  EXPECT_EQ(f.failed.size(), 2u);
  EXPECT_TRUE(f.keeper.Unanswered(kCluster, "db-1"));
  f.failed.clear();
  // After a success, the next failure wakes it again.
  f.instances.mode = ScriptedLeases::Mode::kAnswer;
  f.clock.Advance(Millis(200));
  f.keeper.RenewDue();
  f.instances.mode = ScriptedLeases::Mode::kRefuse;
  f.clock.Advance(Millis(200));
  f.keeper.RenewDue();
  EXPECT_EQ(f.failed.size(), 1u);
}

// The bound on the old lease, case by case (times relative to the keeper's start, ms).
TEST(LeaseKeeper, OldLeaseBound) {
  {  // No revocation seen: no bound at all.
    Fixture f;
    f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
    EXPECT_FALSE(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000).has_value());
    f.keeper.NoteTermAccepted(kCluster, "db-1", 2);  // the holder itself does not count
    EXPECT_FALSE(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000).has_value());
    f.keeper.NoteTermAccepted(kCluster, "db-2", 1);  // the same term does not revoke
    EXPECT_FALSE(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000).has_value());
  }
  {  // Revoked soon after the last acknowledged renewal (no peer round can have started):
     // last ack + duration + margin. Sent at 3000, acked at 3005 -> 4065.
    Fixture f;
    f.clock.Advance(Millis(3000));
    f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
    f.clock.Advance(Millis(300));  // 3305
    f.keeper.NoteTermAccepted(kCluster, "db-2", 2);
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 4065 - 3305);
    f.clock.Advance(Millis(760));  // 4065
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 0);
    f.clock.Advance(Millis(5000));
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 0);
  }
  {  // Revoked later than half a duration after that renewal was sent: a peer round may have
     // extended the lease to the revocation + duration. Revoked at 3600 -> 4660.
    Fixture f;
    f.clock.Advance(Millis(3000));
    f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
    f.clock.Advance(Millis(595));  // 3600
    f.keeper.NoteTermAccepted(kCluster, "db-3", 2);
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 4660 - 3600);
  }
  {  // A renewal that got no answer may still have been read up to its timeout.
     // Acked 3000->3005; the next, sent at 3200, times out at 3400 -> 3400 + 1000 + 60.
    Fixture f;
    f.clock.Advance(Millis(3000));
    f.keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
    f.clock.Advance(Millis(195));  // 3200
    f.instances.mode = ScriptedLeases::Mode::kTimeout;
    f.keeper.RenewDue();           // 3400
    f.keeper.NoteTermAccepted(kCluster, "db-2", 2);
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 4460 - 3400);
  }
  {  // A controller that just started cannot know what its predecessor granted:
     // start + timeout + duration + margin, even without any renewal of its own.
    Fixture f;
    f.keeper.NoteTermAccepted(kCluster, "db-2", 2);
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000), 1260);
    // The spec's duration counts when it is the longer one.
    EXPECT_EQ(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 5000), 6060);
  }
  {  // Forget drops everything.
    Fixture f;
    f.keeper.NoteTermAccepted(kCluster, "db-2", 2);
    f.keeper.Forget(kCluster);
    EXPECT_FALSE(f.keeper.OldLeaseExpiresInMs(kCluster, "db-1", 1, 1000).has_value());
  }
}

TEST(LeaseKeeper, BackgroundThreadRenewsAndStops) {
  // Real time here (the thread paces itself on real time), bounded by a deadline.
  FakeClock clock;
  ScriptedLeases instances(clock);
  LeaseKeeperOptions o;
  o.tick = Millis(1);
  LeaseKeeper keeper(instances, clock, o);
  keeper.SetTarget(kCluster, LeaseTarget{"db-1", 1, 1000}, Pod("db-1"));
  keeper.Start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    clock.Advance(Millis(50));
    std::this_thread::sleep_for(Millis(2));
    if (instances.calls.size() >= 3) break;
  }
  keeper.Stop();
  EXPECT_GE(instances.calls.size(), 3u);
  size_t after_stop = instances.calls.size();
  clock.Advance(Millis(5000));
  std::this_thread::sleep_for(Millis(20));
  EXPECT_EQ(instances.calls.size(), after_stop);
}

}  // namespace
}  // namespace petrel
