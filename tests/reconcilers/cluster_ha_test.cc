#include "reconcilers/cluster_ha.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

FailoverCandidate Replica(std::string name, int serial, std::optional<uint64_t> received,
                          std::optional<uint64_t> replay) {
  FailoverCandidate c;
  c.name = std::move(name);
  c.serial = serial;
  c.reachable = true;
  c.running = true;
  c.is_replica = true;
  c.received_lsn = received;
  c.replay_lsn = replay;
  return c;
}

FailoverCandidate Primary() {
  FailoverCandidate c;
  c.name = "db-1";
  c.serial = 1;
  return c;
}

TEST(ChooseFailoverCandidate, Table) {
  struct Case {
    std::string name;
    std::vector<FailoverCandidate> members;
    FailoverRules rules;
    std::string want;            // "" = refused
    std::string refusal_contains;
  };
  FailoverRules async;
  FailoverRules guarded;
  guarded.max_lag_bytes = 100;
  guarded.primary_lsn = 1000;
  FailoverRules guarded_unknown_primary;
  guarded_unknown_primary.max_lag_bytes = 100;
  FailoverRules sync1of2;
  sync1of2.synchronous_standbys = {"db-2", "db-3"};
  sync1of2.synchronous_number = 1;
  FailoverRules sync2of3;
  sync2of3.synchronous_standbys = {"db-2", "db-3", "db-4"};
  sync2of3.synchronous_number = 2;

  auto unreachable = [](FailoverCandidate c) {
    c.reachable = false;
    return c;
  };
  auto stopped = [](FailoverCandidate c) {
    c.running = false;
    return c;
  };
  auto primary_role = [](FailoverCandidate c) {
    c.is_replica = false;
    return c;
  };
  auto other_system = [](FailoverCandidate c) {
    c.same_system = false;
    return c;
  };

  std::vector<Case> cases = {
      {"most received WAL wins", {Primary(), Replica("db-2", 2, 500, 400), Replica("db-3", 3, 600, 300)},
       async, "db-3", ""},
      {"received ties: most replayed wins",
       {Primary(), Replica("db-2", 2, 600, 400), Replica("db-3", 3, 600, 500)}, async, "db-3", ""},
      {"full tie: lowest serial wins",
       {Primary(), Replica("db-3", 3, 600, 500), Replica("db-2", 2, 600, 500)}, async, "db-2", ""},
      {"replayed only when nothing was received",
       {Primary(), Replica("db-2", 2, std::nullopt, 700), Replica("db-3", 3, 600, 600)}, async,
       "db-2", ""},
      {"the old primary is never chosen", {Replica("db-1", 1, 900, 900), Replica("db-2", 2, 1, 1)},
       async, "db-2", ""},
      {"unreachable, stopped, primary-role and foreign replicas are skipped",
       {Primary(), unreachable(Replica("db-2", 2, 900, 900)), stopped(Replica("db-3", 3, 900, 900)),
        primary_role(Replica("db-4", 4, 900, 900)), other_system(Replica("db-5", 5, 900, 900)),
        Replica("db-6", 6, 100, 100)},
       async, "db-6", ""},
      {"no WAL position at all", {Primary(), Replica("db-2", 2, std::nullopt, std::nullopt)}, async,
       "", "reports no WAL position"},
      {"nobody left", {Primary(), unreachable(Replica("db-2", 2, 1, 1))}, async, "",
       "db-2 does not answer"},
      {"lag guard keeps the close one",
       {Primary(), Replica("db-2", 2, 950, 950), Replica("db-3", 3, 800, 800)}, guarded, "db-2", ""},
      {"lag guard: exactly at the limit is allowed", {Primary(), Replica("db-2", 2, 900, 900)},
       guarded, "db-2", ""},
      {"lag guard refuses everyone", {Primary(), Replica("db-2", 2, 899, 899)}, guarded, "",
       "maxLagOnFailover"},
      {"lag guard without a known primary position is not applied",
       {Primary(), Replica("db-2", 2, 1, 1)}, guarded_unknown_primary, "db-2", ""},
      {"sync ANY 1 of 2, both reachable: most advanced",
       {Primary(), Replica("db-2", 2, 700, 700), Replica("db-3", 3, 800, 800)}, sync1of2, "db-3",
       ""},
      {"sync ANY 1 of 2, one unreachable: refused",
       {Primary(), Replica("db-2", 2, 700, 700), unreachable(Replica("db-3", 3, 800, 800))},
       sync1of2, "", "synchronous"},
      {"sync 2 of 3, one unreachable: safe",
       {Primary(), Replica("db-2", 2, 700, 700), Replica("db-3", 3, 800, 800),
        unreachable(Replica("db-4", 4, 900, 900))},
       sync2of3, "db-3", ""},
      {"sync 2 of 3, two unreachable: refused",
       {Primary(), Replica("db-2", 2, 700, 700), unreachable(Replica("db-3", 3, 800, 800)),
        unreachable(Replica("db-4", 4, 900, 900))},
       sync2of3, "", "only 1 of the 3"},
      {"sync ignores the lag guard's absence of data; a non-listed replica may still win",
       {Primary(), Replica("db-2", 2, 700, 700), Replica("db-3", 3, 800, 800),
        Replica("db-5", 5, 950, 950)},
       sync1of2, "db-5", ""},
  };
  for (const auto& c : cases) {
    FailoverChoice got = ChooseFailoverCandidate("db-1", c.members, c.rules);
    EXPECT_EQ(got.name, c.want) << c.name << ": " << got.refusal;
    if (c.want.empty()) {
      EXPECT_NE(got.refusal.find(c.refusal_contains), std::string::npos)
          << c.name << ": " << got.refusal;
      EXPECT_FALSE(got.lsn.has_value()) << c.name;
    } else {
      EXPECT_TRUE(got.refusal.empty()) << c.name;
      EXPECT_TRUE(got.lsn.has_value()) << c.name;
    }
  }
}

TEST(AssessPrimary, Table) {
  PrimaryObservation healthy;
  healthy.name = "db-1";
  healthy.pod_exists = true;
  healthy.reachable = true;
  healthy.running = true;
  healthy.initialized = true;
  struct Case {
    std::string name;
    PrimaryObservation p;
    bool failing;
    int64_t delay;
    std::string says;
  };
  auto with = [&](auto change) {
    PrimaryObservation p = healthy;
    change(p);
    return p;
  };
  std::vector<Case> cases = {
      {"healthy", healthy, false, 7, ""},
      {"pod gone", with([](auto& p) { p.pod_exists = false; }), true, 7, "is gone"},
      {"pod terminating", with([](auto& p) { p.pod_terminating = true; }), true, 7,
       "being deleted"},
      {"unreachable",
       with([](auto& p) {
         p.reachable = false;
         p.unreachable_error = "timed out";
       }),
       true, 7, "does not answer (timed out)"},
      {"postgres down: a longer grace", with([](auto& p) { p.running = false; }), true,
       kPrimaryDownGraceSeconds, "not running"},
      {"not initialised yet (bootstrapping) is not a failure",
       with([](auto& p) {
         p.running = false;
         p.initialized = false;
       }),
       false, 7, ""},
  };
  for (const auto& c : cases) {
    PrimaryHealth h = AssessPrimary(c.p, 7);
    EXPECT_EQ(h.failing, c.failing) << c.name;
    EXPECT_EQ(h.delay_seconds, c.delay) << c.name;
    EXPECT_NE(h.reason.find(c.says), std::string::npos) << c.name << ": " << h.reason;
  }
}

}  // namespace
}  // namespace petrel
