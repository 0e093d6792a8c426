#include "reconcilers/cluster_checks.h"

#include <algorithm>

namespace petrel {
namespace {

constexpr const char* kConditionType = "ChecksPassing";
constexpr size_t kNamedInMessage = 3;

bool SameStates(const std::vector<HealthCheck>& a, const std::vector<HealthCheck>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].state != b[i].state) return false;
  }
  return true;
}

struct Failing {
  std::string instance;
  const HealthCheck* check;
};

}  // namespace

std::vector<HealthCheck> RecordedChecks(const std::vector<HealthCheck>& recorded,
                                        const std::vector<HealthCheck>& reported) {
  return SameStates(recorded, reported) ? recorded : reported;
}

Condition ChecksCondition(const PostgresClusterStatus& old,
                          const std::vector<InstanceState>& instances, int64_t generation,
                          const std::string& now) {
  std::vector<Failing> failing;
  std::vector<std::string> silent;
  for (const InstanceState& i : instances) {
    if (i.checks.empty()) silent.push_back(i.name);
    for (const HealthCheck& c : i.checks) {
      if (c.state != CheckState::kPassing) failing.push_back({i.name, &c});
    }
  }
  std::stable_sort(failing.begin(), failing.end(), [](const Failing& a, const Failing& b) {
    return a.check->state == CheckState::kCritical && b.check->state != CheckState::kCritical;
  });

  Condition c;
  c.type = kConditionType;
  c.observed_generation = generation;
  c.last_transition_time = now;
  if (!failing.empty()) {
    c.status = "False";
    bool critical = failing.front().check->state == CheckState::kCritical;
    c.reason = critical ? "CheckCritical" : "CheckWarning";
    for (size_t k = 0; k < failing.size() && k < kNamedInMessage; ++k) {
      const Failing& f = failing[k];
      c.message += (k ? "; " : "") + f.instance + " " + f.check->name + " " +
                   CheckStateName(f.check->state) + ": " + f.check->output;
    }
    if (failing.size() > kNamedInMessage) {
      c.message += "; and " + std::to_string(failing.size() - kNamedInMessage) + " more";
    }
    c.message += ". Checks are informational: nothing fails over because of them.";
  } else if (instances.empty() || silent.size() == instances.size()) {
    c.status = "Unknown";
    c.reason = "NoChecksReported";
    c.message = "No instance has reported its health checks yet.";
  } else if (!silent.empty()) {
    c.status = "Unknown";
    c.reason = "ChecksMissing";
    std::string names;
    for (const std::string& n : silent) names += (names.empty() ? "" : ", ") + n;
    c.message = "No health checks from " + names + "; the others pass.";
  } else {
    c.status = "True";
    c.reason = "AllChecksPassing";
    c.message = "All " + std::to_string(instances.size()) + " instances pass vm, pg and role.";
  }
  if (const Condition* prev = old.FindCondition(kConditionType); prev && prev->status == c.status) {
    c.last_transition_time = prev->last_transition_time;
  }
  return c;
}

}  // namespace petrel
