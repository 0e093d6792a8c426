// Pure decisions of high availability, used by the cluster planner (cluster_plan.h): is the
// primary failing, and which replica may replace it. Plain values in, plain values out; no
// clock (times arrive as numbers), no I/O.
//
// Candidate rules (issue 8):
// - eligible: a member other than the old primary whose instance answers, runs Postgres as a
//   replica and holds the cluster's data (same system identifier);
// - most advanced first: received WAL position, then replayed position, then the lowest
//   serial (a deterministic tie-break);
// - asynchronous: a replica more than maxLagOnFailover behind the old primary's last known
//   position is skipped (no guard when the position was never observed);
// - synchronous: a write acknowledged to a client is on at least `number` of the standbys the
//   primary waited for. Only when at most number-1 of them are out of reach is the most advanced
//   reachable replica certain to hold every acknowledged write; otherwise nobody is promoted.
//   A preferred-durability primary that waited for nobody (degraded to asynchronous) follows
//   the asynchronous rules.
//
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace petrel {

// One member as seen by the planner, reduced to what a failover decision needs.
struct FailoverCandidate {
  std::string name;
  int serial = 0;
  bool reachable = false;  // its instance answered GET /status
  bool running = false;    // postgres accepts connections
  bool is_replica = false; // observed in recovery
  bool same_system = true; // holds the cluster's data (system identifier matches)
  std::optional<uint64_t> received_lsn;
  std::optional<uint64_t> replay_lsn;
};

struct FailoverRules {
  std::optional<int64_t> max_lag_bytes;  // asynchronous guard (spec.maxLagOnFailover)
  std::optional<uint64_t> primary_lsn;   // the old primary's last known position
  // Synchronous mode: the standbys the old primary waited for and how many of them confirm
  // each commit. Empty list = the primary committed asynchronously.
  std::vector<std::string> synchronous_standbys;
  int synchronous_number = 0;
};

struct FailoverChoice {
  std::string name;        // "" when nobody may be promoted
  std::optional<uint64_t> lsn;  // the chosen replica's received (else replayed) position
  std::string refusal;     // why nobody, in a sentence, when name is ""
};

// The position that ranks a candidate: WAL received (flushed) by it, which is what
// synchronous commit waits for; the replayed position when nothing was received yet.
std::optional<uint64_t> CandidatePosition(const FailoverCandidate& c);

// The replica to promote in place of `old_primary`, or why none may be.
FailoverChoice ChooseFailoverCandidate(const std::string& old_primary,
                                       const std::vector<FailoverCandidate>& members,
                                       const FailoverRules& rules);

// Why the primary counts as failing, and how long that must last before a failover.
struct PrimaryHealth {
  bool failing = false;
  std::string reason;       // a sentence naming the instance
  int64_t delay_seconds = 0;  // failoverDelay, or a longer grace when the instance answers
};

// What the planner observed about the primary.
struct PrimaryObservation {
  std::string name;
  bool pod_exists = false;
  bool pod_terminating = false;
  bool reachable = false;
  std::string unreachable_error;  // when not reachable
  bool running = false;
  bool fenced = false;  // the instance reports postgres stopped on purpose
  bool initialized = false;
};

// A primary whose instance answers but keeps Postgres down gets this long before a failover
// (a restart after a crash or a parameter change takes a few seconds, and a restarting
// primary waits for its lease).
inline constexpr int64_t kPrimaryDownGraceSeconds = 30;

PrimaryHealth AssessPrimary(const PrimaryObservation& p, int64_t failover_delay_seconds);

}  // namespace petrel
