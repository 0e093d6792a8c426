// How the cluster's status carries its instances' health checks: which copy of each
// instance's checks to record (status.instances[].checks), and the ChecksPassing condition.
//
// Checks are informational. Nothing here (or anywhere in the planner) fails over, fences or
// restarts because a check is failing; the Ready/Degraded conditions and failover decisions
// are made from readiness and roles alone.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "api/cluster.h"
#include "api/instance.h"

namespace petrel {

// The checks to record for an instance, given what is recorded and what it reports now.
// Outputs carry live numbers (load, connections), so a passing set is refreshed only when a
// check appears, disappears or changes state: a healthy cluster's status is not rewritten on
// every reconcile. The same holds for failing checks: a load-dependent `vm` check on a busy
// node would otherwise rewrite the status on every reconcile. The live outputs are in each
// instance's GET /status (`kubectl petrel checks list` shows the recorded ones).
std::vector<HealthCheck> RecordedChecks(const std::vector<HealthCheck>& recorded,
                                        const std::vector<HealthCheck>& reported);

// The ChecksPassing condition: True when every instance reports its checks and all pass;
// False naming the failing checks (worst first); Unknown while no instance reported any.
// last_transition_time is kept from `old` while the status value is unchanged.
Condition ChecksCondition(const PostgresClusterStatus& old,
                          const std::vector<InstanceState>& instances, int64_t generation,
                          const std::string& now);

}  // namespace petrel
