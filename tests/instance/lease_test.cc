#include "instance/lease.h"

#include <gtest/gtest.h>

#include <atomic>

#include "instance/leadership.h"

namespace petrel {
namespace {

using std::chrono::milliseconds;

InstanceSpec LeasedPrimary(int64_t term = 3, int64_t duration_ms = 1000) {
  InstanceSpec s;
  s.generation = 1;
  s.role = InstanceRole::kPrimary;
  s.bootstrap = BootstrapMethod::kInitdb;
  s.term = term;
  s.lease_duration_ms = duration_ms;
  s.peers = {Peer{"db-2", "127.0.0.2", 8000}, Peer{"db-3", "127.0.0.3", 8000}};
  return s;
}

class LeaderLeaseTest : public testing::Test {
 protected:
  LeaderLeaseTest() : lease_(clock_) {}

  void GrantOk(int64_t term = 3, int64_t duration_ms = 1000) {
    auto r = lease_.Grant(LeaseGrant{term, duration_ms});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->term, term);
    EXPECT_EQ(r->remaining_ms, duration_ms);
  }

  FakeClock clock_;
  LeaderLease lease_;
};

TEST_F(LeaderLeaseTest, NoSpecOrNoLeaseDurationNeedsNoLease) {
  EXPECT_EQ(lease_.State(), LeaseState::kNotRequired);
  EXPECT_EQ(lease_.RemainingMs(), -1);
  lease_.SetSpec(LeasedPrimary(3, 0));
  EXPECT_EQ(lease_.State(), LeaseState::kNotRequired);
  InstanceSpec replica = LeasedPrimary();
  replica.role = InstanceRole::kReplica;
  lease_.SetSpec(replica);
  EXPECT_EQ(lease_.State(), LeaseState::kNotRequired);
  EXPECT_EQ(lease_.RemainingMs(), -1);
}

TEST_F(LeaderLeaseTest, APrimaryStartsWithoutALease) {
  lease_.SetSpec(LeasedPrimary());
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
  EXPECT_EQ(lease_.RemainingMs(), 0);
  EXPECT_EQ(lease_.term(), 3);
  EXPECT_NE(lease_.DescribeExpiry().find("no leadership lease for term 3 has been granted"),
            std::string::npos)
      << lease_.DescribeExpiry();
}

TEST_F(LeaderLeaseTest, GrantRunsFromReceiptAndExpires) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  EXPECT_EQ(lease_.RemainingMs(), 1000);
  clock_.Advance(milliseconds(400));
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  EXPECT_EQ(lease_.RemainingMs(), 600);
  clock_.Advance(milliseconds(599));
  EXPECT_NE(lease_.State(), LeaseState::kExpired);
  EXPECT_EQ(lease_.RemainingMs(), 1);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
  EXPECT_EQ(lease_.RemainingMs(), 0);
  EXPECT_NE(lease_.DescribeExpiry().find("expired 0 ms ago"), std::string::npos);
  // A new grant for the term brings it back.
  GrantOk();
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
}

TEST_F(LeaderLeaseTest, RenewalRestartsTheDuration) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(milliseconds(300));
    GrantOk();
  }
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  EXPECT_EQ(lease_.RemainingMs(), 1000);
}

TEST_F(LeaderLeaseTest, GrantsThatDoNotFitTheSpecAreRefusedAndChangeNothing) {
  auto none = lease_.Grant(LeaseGrant{3, 1000});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kConflict);
  EXPECT_NE(none.status().message().find("no spec has been accepted"), std::string::npos);

  InstanceSpec replica = LeasedPrimary();
  replica.role = InstanceRole::kReplica;
  lease_.SetSpec(replica);
  auto not_primary = lease_.Grant(LeaseGrant{3, 1000});
  ASSERT_FALSE(not_primary.ok());
  EXPECT_EQ(not_primary.status().code(), Code::kConflict);
  EXPECT_NE(not_primary.status().message().find("role replica"), std::string::npos);

  lease_.SetSpec(LeasedPrimary(3));
  for (int64_t term : {2, 4}) {
    auto other = lease_.Grant(LeaseGrant{term, 1000});
    ASSERT_FALSE(other.ok());
    EXPECT_EQ(other.status().code(), Code::kConflict);
    EXPECT_NE(other.status().message().find("accepted spec is for term 3"), std::string::npos)
        << other.status().message();
  }
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);

  auto zero = lease_.Grant(LeaseGrant{3, 0});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), Code::kInvalid);
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
}

TEST_F(LeaderLeaseTest, ANewTermOrRoleDropsTheLease) {
  lease_.SetSpec(LeasedPrimary(3));
  GrantOk(3);
  // Same term and role (another generation): kept.
  InstanceSpec same = LeasedPrimary(3);
  same.generation = 2;
  lease_.SetSpec(same);
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  // A new term: the old lease is worthless.
  lease_.SetSpec(LeasedPrimary(4));
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
  GrantOk(4);
  // Demoted and promoted again in the same term: a new grant is needed.
  InstanceSpec replica = LeasedPrimary(4);
  replica.role = InstanceRole::kReplica;
  lease_.SetSpec(replica);
  lease_.SetSpec(LeasedPrimary(4));
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
}

TEST_F(LeaderLeaseTest, NeedsConfirmationAfterHalfTheDurationWithoutRenewal) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  EXPECT_FALSE(lease_.BeginConfirmation().has_value());
  clock_.Advance(milliseconds(499));
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  EXPECT_FALSE(lease_.BeginConfirmation().has_value());
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(lease_.State(), LeaseState::kNeedsConfirmation);
  auto round = lease_.BeginConfirmation();
  ASSERT_TRUE(round.has_value());
  EXPECT_EQ(round->term, 3);
  EXPECT_EQ(round->peers.size(), 2u);
  EXPECT_EQ(round->call_timeout, milliseconds(250));  // half of what is left
  // One round at a time.
  EXPECT_FALSE(lease_.BeginConfirmation().has_value());
}

TEST_F(LeaderLeaseTest, AllConfirmExtendsFromTheRoundStart) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  clock_.Advance(milliseconds(600));
  auto round = lease_.BeginConfirmation();
  ASSERT_TRUE(round.has_value());
  clock_.Advance(milliseconds(100));  // the answers take a while
  lease_.FinishConfirmation(*round, true);
  EXPECT_EQ(lease_.State(), LeaseState::kValid);
  // Extended to round start (600) + 1000, not to now + 1000.
  EXPECT_EQ(lease_.RemainingMs(), 900);
  // Confirmed rounds keep it alive for as long as the peers confirm.
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(milliseconds(500));
    auto next = lease_.BeginConfirmation();
    ASSERT_TRUE(next.has_value()) << i;
    lease_.FinishConfirmation(*next, true);
  }
  EXPECT_NE(lease_.State(), LeaseState::kExpired);
}

TEST_F(LeaderLeaseTest, ARoundWithARefusalDoesNotExtendAndRetriesLater) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  clock_.Advance(milliseconds(500));
  auto round = lease_.BeginConfirmation();
  ASSERT_TRUE(round.has_value());
  lease_.FinishConfirmation(*round, false);
  EXPECT_EQ(lease_.RemainingMs(), 500);
  // Retried after a tenth of the duration, not at once.
  EXPECT_FALSE(lease_.BeginConfirmation().has_value());
  clock_.Advance(milliseconds(100));
  auto retry = lease_.BeginConfirmation();
  ASSERT_TRUE(retry.has_value());
  lease_.FinishConfirmation(*retry, false);
  clock_.Advance(milliseconds(400));
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
}

TEST_F(LeaderLeaseTest, AConfirmationNeverRevivesAnExpiredLease) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  clock_.Advance(milliseconds(900));
  auto round = lease_.BeginConfirmation();
  ASSERT_TRUE(round.has_value());
  clock_.Advance(milliseconds(200));  // the lease ran out while peers answered
  lease_.FinishConfirmation(*round, true);
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
}

TEST_F(LeaderLeaseTest, AConfirmationOfAnOldTermIsIgnored) {
  lease_.SetSpec(LeasedPrimary(3));
  GrantOk(3);
  clock_.Advance(milliseconds(500));
  auto round = lease_.BeginConfirmation();
  ASSERT_TRUE(round.has_value());
  lease_.SetSpec(LeasedPrimary(4));
  GrantOk(4);
  clock_.Advance(milliseconds(600));
  lease_.FinishConfirmation(*round, true);  // for term 3: must not extend term 4
  EXPECT_EQ(lease_.RemainingMs(), 400);
}

TEST_F(LeaderLeaseTest, NoPeersMeansNoConfirmationRounds) {
  InstanceSpec alone = LeasedPrimary();
  alone.peers.clear();
  lease_.SetSpec(alone);
  GrantOk();
  clock_.Advance(milliseconds(700));
  EXPECT_EQ(lease_.State(), LeaseState::kNeedsConfirmation);
  EXPECT_FALSE(lease_.BeginConfirmation().has_value());
}

TEST_F(LeaderLeaseTest, AfterAStallGrantsAreRefusedForOneDuration) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  // Short gaps (scheduling noise) change nothing.
  lease_.NoteTickGap(milliseconds(249));
  GrantOk();
  // A quarter of the duration: the process was frozen; a grant read now may be stale.
  clock_.Advance(milliseconds(3000));
  lease_.NoteTickGap(milliseconds(3000));
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
  auto stale = lease_.Grant(LeaseGrant{3, 1000});
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), Code::kUnavailable);
  EXPECT_NE(stale.status().message().find("did not run for 3000 ms"), std::string::npos)
      << stale.status().message();
  EXPECT_EQ(lease_.State(), LeaseState::kExpired);
  clock_.Advance(milliseconds(999));
  EXPECT_FALSE(lease_.Grant(LeaseGrant{3, 1000}).ok());
  clock_.Advance(milliseconds(1));
  GrantOk();
}

TEST_F(LeaderLeaseTest, AStallDoesNotShortenTheLeaseHeld) {
  lease_.SetSpec(LeasedPrimary());
  GrantOk();
  clock_.Advance(milliseconds(300));
  lease_.NoteTickGap(milliseconds(300));
  EXPECT_EQ(lease_.RemainingMs(), 700);
  EXPECT_FALSE(lease_.Grant(LeaseGrant{3, 1000}).ok());
  EXPECT_EQ(lease_.RemainingMs(), 700);
}

TEST_F(LeaderLeaseTest, StallsDoNotMatterWithoutALeaseToKeep) {
  InstanceSpec replica = LeasedPrimary();
  replica.role = InstanceRole::kReplica;
  lease_.SetSpec(replica);
  lease_.NoteTickGap(milliseconds(5000));
  lease_.SetSpec(LeasedPrimary());  // promoted right after
  GrantOk();
}

struct ConfirmCase {
  const char* name;
  std::optional<InstanceSpec> spec;
  int64_t asked_term;
  bool want;
};

class PeerConfirmationTest : public testing::TestWithParam<ConfirmCase> {};

TEST_P(PeerConfirmationTest, ConfirmsOnlyAsReplicaOfTheSameTerm) {
  const ConfirmCase& c = GetParam();
  PeerConfirmReply r = DecidePeerConfirmation(c.spec, PeerConfirmRequest{c.asked_term, "db-1"});
  EXPECT_EQ(r.confirmed, c.want) << r.reason;
  EXPECT_EQ(r.reason.empty(), c.want) << r.reason;
}

InstanceSpec ReplicaOfTerm(int64_t term) {
  InstanceSpec s = LeasedPrimary(term, 0);
  s.role = InstanceRole::kReplica;
  s.primary = Endpoint{"127.0.0.1", 5432};
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Table, PeerConfirmationTest,
    testing::Values(ConfirmCase{"ReplicaSameTerm", ReplicaOfTerm(3), 3, true},
                    ConfirmCase{"ReplicaNewerTerm", ReplicaOfTerm(4), 3, false},
                    ConfirmCase{"ReplicaOlderTerm", ReplicaOfTerm(2), 3, false},
                    ConfirmCase{"PrimaryNeverConfirms", LeasedPrimary(3), 3, false},
                    ConfirmCase{"NoSpec", std::nullopt, 3, false}),
    [](const testing::TestParamInfo<ConfirmCase>& i) { return std::string(i.param.name); });

// The guard's round asks every peer in parallel and needs all of them.
TEST(LeadershipGuardTest, ARoundNeedsEveryPeer) {
  FakeClock clock;
  LeaderLease lease(clock);
  std::atomic<int> asked{0};
  LeadershipGuardOptions o;
  o.name = "db-1";
  o.fence = [] { return false; };
  o.on_fenced = [] {};
  o.ask_peer = [&](const Peer& p, const PeerConfirmRequest& req,
                   Millis timeout) -> Result<PeerConfirmReply> {
    ++asked;
    EXPECT_EQ(req.primary, "db-1");
    EXPECT_EQ(timeout, milliseconds(250));
    if (p.name == "down") return UnavailableError("connection refused");
    if (p.name == "newer") return PeerConfirmReply{false, "term 4"};
    return PeerConfirmReply{true, ""};
  };
  LeadershipGuard guard(lease, o);
  ConfirmationRound round{3, clock.Now(), milliseconds(250), {Peer{"a"}, Peer{"b"}}};
  std::string why;
  EXPECT_TRUE(guard.RunRound(round, &why));
  EXPECT_EQ(asked.load(), 2);
  round.peers.push_back(Peer{"down"});
  round.peers.push_back(Peer{"newer"});
  EXPECT_FALSE(guard.RunRound(round, &why));
  EXPECT_NE(why.find("down: connection refused"), std::string::npos) << why;
  EXPECT_NE(why.find("newer: term 4"), std::string::npos) << why;
  round.peers.clear();
  EXPECT_FALSE(guard.RunRound(round, &why));
}

}  // namespace
}  // namespace petrel
