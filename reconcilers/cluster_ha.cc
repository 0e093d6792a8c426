#include "reconcilers/cluster_ha.h"

#include <algorithm>

#include "api/instance.h"

namespace petrel {

namespace {

std::string Lsn(std::optional<uint64_t> v) { return v ? FormatLsn(*v) : "unknown"; }

bool MoreAdvanced(const FailoverCandidate& a, const FailoverCandidate& b) {
  uint64_t pa = CandidatePosition(a).value_or(0);
  uint64_t pb = CandidatePosition(b).value_or(0);
  if (pa != pb) return pa > pb;
  uint64_t ra = a.replay_lsn.value_or(0);
  uint64_t rb = b.replay_lsn.value_or(0);
  if (ra != rb) return ra > rb;
  return a.serial < b.serial;
}

}  // namespace

std::optional<uint64_t> CandidatePosition(const FailoverCandidate& c) {
  return c.received_lsn ? c.received_lsn : c.replay_lsn;
}

FailoverChoice ChooseFailoverCandidate(const std::string& old_primary,
                                       const std::vector<FailoverCandidate>& members,
                                       const FailoverRules& rules) {
  std::vector<const FailoverCandidate*> eligible;
  std::vector<std::string> skipped;
  for (const auto& m : members) {
    if (m.name == old_primary) continue;
    if (!m.reachable) {
      skipped.push_back(m.name + " does not answer");
    } else if (!m.running || !m.is_replica) {
      skipped.push_back(m.name + " is not running as a replica");
    } else if (!m.same_system) {
      skipped.push_back(m.name + " holds other data (system identifier differs)");
    } else if (!CandidatePosition(m)) {
      skipped.push_back(m.name + " reports no WAL position");
    } else {
      eligible.push_back(&m);
    }
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : "; ") + s;
    return out;
  };

  if (!rules.synchronous_standbys.empty()) {
    int listed = static_cast<int>(rules.synchronous_standbys.size());
    int number = std::clamp(rules.synchronous_number, 1, listed);
    int reachable = 0;
    for (const auto& name : rules.synchronous_standbys) {
      reachable += std::any_of(eligible.begin(), eligible.end(),
                               [&](const FailoverCandidate* c) { return c->name == name; });
    }
    int needed = listed - number + 1;
    if (reachable < needed) {
      std::string list;
      for (const auto& s : rules.synchronous_standbys) list += (list.empty() ? "" : ", ") + s;
      return {"", std::nullopt,
              "synchronous replication: only " + std::to_string(reachable) + " of the " +
                  std::to_string(listed) + " synchronous standbys (" + list +
                  ") can be checked and " + std::to_string(needed) +
                  " are needed to be sure that no acknowledged write is lost; waiting for one "
                  "to come back" +
                  (skipped.empty() ? "" : " (" + join(skipped) + ")")};
    }
  } else if (rules.max_lag_bytes && rules.primary_lsn) {
    std::vector<const FailoverCandidate*> within;
    for (const auto* c : eligible) {
      uint64_t pos = *CandidatePosition(*c);
      uint64_t lag = pos >= *rules.primary_lsn ? 0 : *rules.primary_lsn - pos;
      if (lag <= static_cast<uint64_t>(*rules.max_lag_bytes)) {
        within.push_back(c);
      } else {
        skipped.push_back(c->name + " is " + std::to_string(lag) +
                          " bytes behind the primary's last known position " +
                          Lsn(rules.primary_lsn) + " (maxLagOnFailover " +
                          std::to_string(*rules.max_lag_bytes) + ")");
      }
    }
    eligible = std::move(within);
  }

  if (eligible.empty()) {
    return {"", std::nullopt,
            "no replica can be promoted" + (skipped.empty() ? "" : ": " + join(skipped))};
  }
  const FailoverCandidate* best = *std::min_element(
      eligible.begin(), eligible.end(),
      [](const FailoverCandidate* a, const FailoverCandidate* b) { return MoreAdvanced(*a, *b); });
  return {best->name, CandidatePosition(*best), ""};
}

PrimaryHealth AssessPrimary(const PrimaryObservation& p, int64_t failover_delay_seconds) {
  PrimaryHealth h;
  h.delay_seconds = failover_delay_seconds;
  if (!p.pod_exists) {
    h.failing = true;
    h.reason = "the Pod of primary " + p.name + " is gone";
  } else if (p.pod_terminating) {
    h.failing = true;
    h.reason = "the Pod of primary " + p.name + " is being deleted";
  } else if (!p.reachable) {
    h.failing = true;
    h.reason = "primary " + p.name + " does not answer" +
               (p.unreachable_error.empty() ? "" : " (" + p.unreachable_error + ")");
  } else if (p.initialized && !p.running) {
    h.failing = true;
    h.reason = "primary " + p.name + " answers but Postgres is not running" +
               std::string(p.fenced ? " (fenced)" : "");
    h.delay_seconds = std::max(failover_delay_seconds, kPrimaryDownGraceSeconds);
  }
  return h;
}

}  // namespace petrel
