#include "instance/plan.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

InstanceSpec Primary() {
  InstanceSpec s;
  s.generation = 1;
  s.role = InstanceRole::kPrimary;
  s.bootstrap = BootstrapMethod::kInitdb;
  return s;
}

InstanceSpec Replica() {
  InstanceSpec s;
  s.generation = 1;
  s.role = InstanceRole::kReplica;
  s.bootstrap = BootstrapMethod::kClone;
  s.primary = Endpoint{"127.0.1.1", 5432};
  s.slot_name = "db_2";
  return s;
}

// A healthy running instance of the given role, to be modified per case.
ObservedInstance Running(InstanceRole role) {
  ObservedInstance o;
  o.has_spec = o.has_data = o.postgres_running = o.accepting = o.config_current = true;
  o.sql_role = role;
  o.standby_signal = role == InstanceRole::kReplica;
  return o;
}

struct PlanCase {
  const char* name;
  ObservedInstance observed;
  InstanceSpec spec;
  ActionKind want;
};

class PlanTest : public testing::TestWithParam<PlanCase> {};

TEST_P(PlanTest, ChoosesTheNextAction) {
  const PlanCase& c = GetParam();
  InstanceAction a = PlanInstanceAction(c.observed, c.spec);
  EXPECT_EQ(ActionName(a.kind), std::string(ActionName(c.want))) << a.reason;
  EXPECT_FALSE(a.reason.empty());
}

PlanCase Case(const char* name, ObservedInstance o, InstanceSpec s, ActionKind want) {
  return PlanCase{name, o, s, want};
}

ObservedInstance With(ObservedInstance o, void (*f)(ObservedInstance&)) {
  f(o);
  return o;
}

InstanceSpec WithSpec(InstanceSpec s, void (*f)(InstanceSpec&)) {
  f(s);
  return s;
}

constexpr const char* kSourceUid = "uid-source";
constexpr const char* kOurUid = "uid-ours";

// The first instance of a cluster restored from a snapshot.
InstanceSpec Restored() {
  InstanceSpec s = Primary();
  s.bootstrap = BootstrapMethod::kSnapshot;
  s.snapshot_path = "/snapshots/db/daily";
  s.cluster_uid = kOurUid;
  return s;
}

// Data on the volume (recorded for `uid`), postgres stopped, configuration current.
ObservedInstance Stopped(const char* uid) {
  ObservedInstance o = Running(InstanceRole::kPrimary);
  o.postgres_running = o.accepting = false;
  o.sql_role = InstanceRole::kNone;
  o.data_cluster_uid = uid;
  return o;
}

ObservedInstance Empty() {
  ObservedInstance o;
  o.has_spec = true;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Table, PlanTest,
    testing::Values(
        Case("NoSpecWaits", ObservedInstance{}, InstanceSpec{}, ActionKind::kWait),
        Case("EmptyVolumeInitdb", Empty(), Primary(), ActionKind::kInitdb),
        Case("EmptyVolumeClone", Empty(), Replica(), ActionKind::kClone),
        Case("EmptyVolumeReplicaInitdbWaits", Empty(),
             WithSpec(Replica(), [](InstanceSpec& s) { s.bootstrap = BootstrapMethod::kInitdb; }),
             ActionKind::kWait),
        Case("EmptyVolumeBootstrapNoneWaits", Empty(),
             WithSpec(Primary(), [](InstanceSpec& s) { s.bootstrap = BootstrapMethod::kNone; }),
             ActionKind::kWait),
        Case("EmptyVolumeSnapshotPathRestores", Empty(), Restored(), ActionKind::kRestore),
        Case("EmptyVolumeSnapshotWithoutPathWaitsForTheProvisioner", Empty(),
             WithSpec(Restored(), [](InstanceSpec& s) { s.snapshot_path.clear(); }),
             ActionKind::kWait),
        Case("RestoredDataOfAnotherClusterIsRekeyed", Stopped(kSourceUid), Restored(),
             ActionKind::kRekey),
        Case("RestoredDataWithoutUidIsRekeyed", Stopped(""), Restored(), ActionKind::kRekey),
        Case("RunningRestoredDataStopsBeforeRekey",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.data_cluster_uid = kSourceUid; }),
             Restored(), ActionKind::kStop),
        Case("RekeyedDataStartsAsPrimary", Stopped(kOurUid), Restored(), ActionKind::kStart),
        Case("DataOfAnotherClusterIsRefused", Stopped(kSourceUid),
             WithSpec(Primary(), [](InstanceSpec& s) { s.cluster_uid = kOurUid; }),
             ActionKind::kRefuse),
        Case("RunningDataOfAnotherClusterIsLeftAlone",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.data_cluster_uid = kSourceUid; }),
             WithSpec(Primary(), [](InstanceSpec& s) { s.cluster_uid = kOurUid; }),
             ActionKind::kRefuse),
        Case("DataWithoutUidIsAdopted", Stopped(""),
             WithSpec(Primary(), [](InstanceSpec& s) { s.cluster_uid = kOurUid; }),
             ActionKind::kRecordUid),
        Case("SpecWithoutUidIgnoresIdentity", Stopped(kSourceUid), Primary(), ActionKind::kStart),
        Case("InSyncPrimaryDoesNothing", Running(InstanceRole::kPrimary), Primary(),
             ActionKind::kNone),
        Case("InSyncReplicaDoesNothing", Running(InstanceRole::kReplica), Replica(),
             ActionKind::kNone),
        Case("StoppedStarts",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             Primary(), ActionKind::kStart),
        Case("CrashBackoffWaits",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) {
                    o.postgres_running = o.accepting = false;
                    o.in_restart_backoff = true;
                  }),
             Primary(), ActionKind::kWait),
        Case("StartingWaitsForConnections",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.accepting = false; }),
             Primary(), ActionKind::kWait),
        Case("StaleConfigIsRewritten",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.config_current = false; }),
             Primary(), ActionKind::kWriteConfig),
        Case("ConfigBeforeStart",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) {
                    o.config_current = o.postgres_running = o.accepting = false;
                  }),
             Primary(), ActionKind::kWriteConfig),
        Case("ReplicaDesiredPrimaryPromotes", Running(InstanceRole::kReplica), Primary(),
             ActionKind::kPromote),
        Case("StoppedStandbyStartsBeforePromote",
             With(Running(InstanceRole::kReplica),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             Primary(), ActionKind::kStart),
        Case("RunningPrimaryToReplicaStopsFirst", Running(InstanceRole::kPrimary), Replica(),
             ActionKind::kStop),
        Case("StoppedOldPrimaryRewinds",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             Replica(), ActionKind::kRewind),
        Case("FailedRewindReclones",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) {
                    o.postgres_running = o.accepting = false;
                    o.rewind_failed = true;
                  }),
             Replica(), ActionKind::kReclone),
        Case("DivergedReplicaStopsToRewind",
             With(Running(InstanceRole::kReplica), [](ObservedInstance& o) { o.diverged = true; }),
             Replica(), ActionKind::kStop),
        Case("FencedRunningStops", Running(InstanceRole::kPrimary),
             WithSpec(Primary(), [](InstanceSpec& s) { s.fenced = true; }), ActionKind::kStop),
        Case("FencedStoppedStaysStopped",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             WithSpec(Primary(), [](InstanceSpec& s) { s.fenced = true; }), ActionKind::kNone),
        Case("FencedReplicaIsNotRewound",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             WithSpec(Replica(), [](InstanceSpec& s) { s.fenced = true; }), ActionKind::kNone),
        Case("PrimarySyncsSlots",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.slots_current = false; }),
             Primary(), ActionKind::kSyncSlots),
        Case("PromotedPrimaryCheckpointsOnItsNewTimeline",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.checkpoint_predates_timeline = true; }),
             Primary(), ActionKind::kCheckpoint),
        Case("ReplicaNeverCheckpoints",
             With(Running(InstanceRole::kReplica),
                  [](ObservedInstance& o) { o.checkpoint_predates_timeline = true; }),
             Replica(), ActionKind::kNone),
        Case("ReplicaDropsLeftoverSlots",
             With(Running(InstanceRole::kReplica),
                  [](ObservedInstance& o) { o.slots_current = false; }),
             Replica(), ActionKind::kSyncSlots),
        Case("NoRoleDoesNotStart",
             With(Running(InstanceRole::kPrimary),
                  [](ObservedInstance& o) { o.postgres_running = o.accepting = false; }),
             WithSpec(Primary(), [](InstanceSpec& s) { s.role = InstanceRole::kNone; }),
             ActionKind::kWait)),
    [](const testing::TestParamInfo<PlanCase>& info) { return info.param.name; });

InstanceSpec LeasedPrimary() {
  InstanceSpec s = Primary();
  s.term = 2;
  s.lease_duration_ms = 1000;
  return s;
}

ObservedInstance Lease(ObservedInstance o, LeaseState state) {
  o.lease = state;
  return o;
}

ObservedInstance Stopped(InstanceRole role) {
  ObservedInstance o = Running(role);
  o.postgres_running = o.accepting = false;
  return o;
}

// A primary that needs a lease (instance/lease.h) never runs writable without one.
INSTANTIATE_TEST_SUITE_P(
    Lease, PlanTest,
    testing::Values(
        Case("ValidLeaseRuns", Lease(Running(InstanceRole::kPrimary), LeaseState::kValid),
             LeasedPrimary(), ActionKind::kNone),
        Case("LeaseBeingConfirmedRuns",
             Lease(Running(InstanceRole::kPrimary), LeaseState::kNeedsConfirmation),
             LeasedPrimary(), ActionKind::kNone),
        Case("ExpiredLeaseFencesAtOnce",
             Lease(Running(InstanceRole::kPrimary), LeaseState::kExpired), LeasedPrimary(),
             ActionKind::kFence),
        Case("ExpiredLeaseFencesAStartingPrimary",
             Lease(With(Running(InstanceRole::kPrimary),
                        [](ObservedInstance& o) { o.accepting = false; }),
                   LeaseState::kExpired),
             LeasedPrimary(), ActionKind::kFence),
        Case("ExpiredLeaseFencesBeforeAnythingElse",
             Lease(With(Running(InstanceRole::kPrimary),
                        [](ObservedInstance& o) { o.config_current = o.slots_current = false; }),
                   LeaseState::kExpired),
             LeasedPrimary(), ActionKind::kFence),
        Case("NoLeaseDoesNotStart", Lease(Stopped(InstanceRole::kPrimary), LeaseState::kExpired),
             LeasedPrimary(), ActionKind::kWait),
        Case("NoLeaseStillRewritesConfig",
             Lease(With(Stopped(InstanceRole::kPrimary),
                        [](ObservedInstance& o) { o.config_current = false; }),
                   LeaseState::kExpired),
             LeasedPrimary(), ActionKind::kWriteConfig),
        Case("LeaseGrantedStarts", Lease(Stopped(InstanceRole::kPrimary), LeaseState::kValid),
             LeasedPrimary(), ActionKind::kStart),
        Case("NoLeaseDoesNotPromote", Lease(Running(InstanceRole::kReplica), LeaseState::kExpired),
             LeasedPrimary(), ActionKind::kWait),
        Case("LeaseGrantedPromotes", Lease(Running(InstanceRole::kReplica), LeaseState::kValid),
             LeasedPrimary(), ActionKind::kPromote),
        Case("NoLeaseStandbyMayStartReadOnly",
             Lease(Stopped(InstanceRole::kReplica), LeaseState::kExpired), LeasedPrimary(),
             ActionKind::kStart),
        Case("NoLeaseEmptyVolumeStillInitdb", Lease(Empty(), LeaseState::kExpired), LeasedPrimary(),
             ActionKind::kInitdb),
        Case("SpecFenceWinsOverLease", Lease(Running(InstanceRole::kPrimary), LeaseState::kExpired),
             WithSpec(LeasedPrimary(), [](InstanceSpec& s) { s.fenced = true; }),
             ActionKind::kStop),
        // The manager reports kNotRequired for replicas; a replica never waits for a lease.
        Case("ReplicaIgnoresLease", Lease(Running(InstanceRole::kReplica), LeaseState::kExpired),
             WithSpec(Replica(), [](InstanceSpec& s) { s.lease_duration_ms = 1000; }),
             ActionKind::kNone)),
    [](const testing::TestParamInfo<PlanCase>& info) { return info.param.name; });

TEST(CheckSpecTransitionTest, AcceptsNewerAndIdenticalSpecs) {
  InstanceSpec s = Primary();
  EXPECT_TRUE(CheckSpecTransition(std::nullopt, false, s).ok());
  EXPECT_TRUE(CheckSpecTransition(s, true, s).ok());
  InstanceSpec next = s;
  next.generation = 2;
  next.role = InstanceRole::kReplica;
  next.primary = Endpoint{"127.0.1.2", 5432};
  EXPECT_TRUE(CheckSpecTransition(s, true, next).ok());
}

TEST(CheckSpecTransitionTest, RejectsStaleOrRewrittenGenerations) {
  InstanceSpec s = Primary();
  s.generation = 5;
  InstanceSpec older = s;
  older.generation = 4;
  Status st = CheckSpecTransition(s, true, older);
  EXPECT_EQ(st.code(), Code::kConflict);
  EXPECT_NE(st.message().find("older than the accepted generation 5"), std::string::npos);
  InstanceSpec changed = s;
  changed.fenced = true;
  EXPECT_EQ(CheckSpecTransition(s, true, changed).code(), Code::kConflict);
}

TEST(CheckSpecTransitionTest, RejectsBootstrapsImpossibleOnAnEmptyVolume) {
  InstanceSpec r = Replica();
  r.bootstrap = BootstrapMethod::kInitdb;
  Status st = CheckSpecTransition(std::nullopt, false, r);
  EXPECT_EQ(st.code(), Code::kConflict);
  EXPECT_NE(st.message().find("replica cannot be created with initdb"), std::string::npos);
  // With data on the volume the bootstrap method no longer matters.
  EXPECT_TRUE(CheckSpecTransition(std::nullopt, true, r).ok());
  InstanceSpec snap = Restored();
  EXPECT_TRUE(CheckSpecTransition(std::nullopt, false, snap).ok());
  InstanceSpec snap_replica = Restored();
  snap_replica.role = InstanceRole::kReplica;
  snap_replica.primary = Endpoint{"127.0.1.1", 5432};
  st = CheckSpecTransition(std::nullopt, false, snap_replica);
  EXPECT_EQ(st.code(), Code::kConflict);
  EXPECT_NE(st.message().find("clone replicas"), std::string::npos);
  InstanceSpec no_uid = Restored();
  no_uid.cluster_uid.clear();
  EXPECT_EQ(CheckSpecTransition(std::nullopt, true, no_uid).code(), Code::kConflict);
  InstanceSpec relative = Restored();
  relative.snapshot_path = "snapshots/x";
  EXPECT_EQ(CheckSpecTransition(std::nullopt, false, relative).code(), Code::kConflict);
}

TEST(CheckSpecTransitionTest, GenerationsOfAnotherClusterDoNotCount) {
  // A restored volume carries the source's saved spec; our first spec has a lower generation.
  InstanceSpec source = Primary();
  source.generation = 9;
  source.cluster_uid = kSourceUid;
  InstanceSpec ours = Restored();
  ours.generation = 1;
  EXPECT_TRUE(CheckSpecTransition(source, true, ours).ok());
  InstanceSpec ours_again = ours;
  ours_again.generation = 0;
  EXPECT_EQ(CheckSpecTransition(ours, true, ours_again).code(), Code::kConflict);
}

TEST(CheckDataIdentityTest, DataOfAnotherClusterNeedsBootstrapSnapshot) {
  InstanceSpec ours = Primary();
  ours.cluster_uid = kOurUid;
  Status st = CheckDataIdentity(kSourceUid, ours);
  EXPECT_EQ(st.code(), Code::kConflict);
  EXPECT_NE(st.message().find("uid-source"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("delete the PersistentVolumeClaim"), std::string::npos);
  EXPECT_TRUE(CheckDataIdentity(kOurUid, ours).ok());
  EXPECT_TRUE(CheckDataIdentity("", ours).ok());           // adopted
  EXPECT_TRUE(CheckDataIdentity(kSourceUid, Primary()).ok());  // no uid in the spec
  EXPECT_TRUE(CheckDataIdentity(kSourceUid, Restored()).ok());  // re-keyed
  EXPECT_TRUE(NeedsRekey(kSourceUid, Restored()));
  EXPECT_TRUE(NeedsRekey("", Restored()));
  EXPECT_FALSE(NeedsRekey(kOurUid, Restored()));
  EXPECT_FALSE(NeedsRekey(kSourceUid, ours));
}

}  // namespace
}  // namespace petrel
