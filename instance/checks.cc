#include "instance/checks.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <sstream>

namespace petrel {
namespace {

int Severity(CheckState s) {
  switch (s) {
    case CheckState::kPassing:
      return 0;
    case CheckState::kWarning:
      return 1;
    case CheckState::kCritical:
      return 2;
  }
  return 2;
}

CheckState Worse(CheckState a, CheckState b) { return Severity(a) >= Severity(b) ? a : b; }

// A graded value: warning at or above `warning`, critical at or above `critical`.
CheckState Grade(double value, double warning, double critical) {
  if (value >= critical) return CheckState::kCritical;
  if (value >= warning) return CheckState::kWarning;
  return CheckState::kPassing;
}

// One finding of a check; the output lists the worst findings first, so that the line shown
// in a narrow table starts with what needs attention.
struct Part {
  CheckState state;
  std::string text;
};

HealthCheck Combine(const std::string& name, std::vector<Part> parts) {
  std::stable_sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) {
    return Severity(a.state) > Severity(b.state);
  });
  HealthCheck c;
  c.name = name;
  for (const Part& p : parts) {
    c.state = Worse(c.state, p.state);
    c.output += (c.output.empty() ? "" : "; ") + p.text;
  }
  return c;
}

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// "1.0" -> "1", "1.5" -> "1.5".
std::string Trimmed(double v) {
  std::string s = Fixed(v, 1);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string Percent(double v) { return Fixed(v, 0) + "%"; }

// The disk share used, rounded the way the outputs show it; nullopt when unknown.
std::optional<double> DiskPercent(const VmFacts& vm) {
  if (!vm.volume || vm.volume->size_bytes == 0) return std::nullopt;
  return vm.volume->UsedPercent();
}

bool SameEndpoint(const std::string& following, const Endpoint& want) {
  return following == want.host + ":" + std::to_string(want.port);
}

std::string LagText(int64_t bytes, double seconds) {
  std::string s = "replication lag " + FormatBytes(bytes);
  if (seconds >= 0.05) s += " (" + FormatSeconds(seconds) + ")";
  return s;
}

CheckState LagState(int64_t bytes, double seconds, const CheckThresholds& t) {
  CheckState s = CheckState::kPassing;
  if (bytes >= 0) {
    s = Worse(s, Grade(static_cast<double>(bytes), static_cast<double>(t.lag_warning_bytes),
                       static_cast<double>(t.lag_critical_bytes)));
  }
  if (seconds >= 0) s = Worse(s, Grade(seconds, t.lag_warning_seconds, t.lag_critical_seconds));
  return s;
}

// The finding for an instance whose postgres does not answer; the same for pg and role.
Part NotAccepting(const ManagerFacts& m, const std::string& what) {
  if (m.fenced) return {CheckState::kWarning, what + "fenced: postgres is stopped on purpose"};
  if (!m.has_spec) {
    return {CheckState::kWarning, what + "waiting for a spec from the controller"};
  }
  return {CheckState::kCritical, what + "postgres is not accepting connections" +
                                     (m.phase.empty() ? "" : " (" + m.phase + ")")};
}

std::vector<Part> PrimaryParts(const PgFacts& pg, const CheckThresholds& t) {
  std::vector<Part> parts;
  if (!pg.writable) {
    parts.push_back({CheckState::kCritical, pg.default_read_only
                                                ? "read-only (default_transaction_read_only is on)"
                                                : "read-only"});
  }
  // Standbys behind or not streaming are named; the healthy ones are summed up in one part.
  int64_t max_bytes = -1;
  double max_seconds = -1;
  int healthy = 0;
  for (const StandbyFacts& sb : pg.standbys) {
    double seconds = sb.info.replay_lag_ms >= 0 ? sb.info.replay_lag_ms / 1000.0 : -1;
    CheckState s = LagState(sb.lag_bytes, seconds, t);
    if (sb.info.state != "streaming") {
      parts.push_back({Worse(s, CheckState::kWarning),
                       "standby " + sb.info.name + " is " +
                           (sb.info.state.empty() ? "connecting" : sb.info.state) + ", " +
                           LagText(sb.lag_bytes, seconds)});
    } else if (s != CheckState::kPassing) {
      parts.push_back({s, "standby " + sb.info.name + " " + LagText(sb.lag_bytes, seconds)});
    } else {
      ++healthy;
      max_bytes = std::max(max_bytes, sb.lag_bytes);
      max_seconds = std::max(max_seconds, seconds);
    }
  }
  if (healthy == 1) {
    parts.push_back({CheckState::kPassing, LagText(std::max<int64_t>(max_bytes, 0), max_seconds)});
  } else if (healthy > 1) {
    parts.push_back({CheckState::kPassing,
                     std::to_string(healthy) + " standbys, " +
                         LagText(std::max<int64_t>(max_bytes, 0), max_seconds) + " at most"});
  }
  for (const SlotFacts& slot : pg.slots) {
    if (!slot.active) {
      parts.push_back(
          {CheckState::kWarning, "replication slot " + slot.name + " has no standby connected"});
    }
  }
  return parts;
}

std::vector<Part> ReplicaParts(const PgFacts& pg, const ManagerFacts& m, const CheckThresholds& t) {
  std::vector<Part> parts;
  std::string expected =
      m.desired_primary ? m.desired_primary->host + ":" + std::to_string(m.desired_primary->port)
                        : "";
  if (!pg.streaming) {
    std::string receiver =
        pg.receiver_status.empty() ? "no WAL receiver" : "WAL receiver " + pg.receiver_status;
    parts.push_back(
        {CheckState::kCritical,
         "not streaming" + (expected.empty() ? "" : " from " + expected) + " (" + receiver + ")"});
  } else if (m.desired_primary && !SameEndpoint(pg.following, *m.desired_primary)) {
    parts.push_back({CheckState::kCritical, "streaming from " + pg.following +
                                                ", not from the current primary " + expected});
  } else {
    parts.push_back({CheckState::kPassing,
                     "streaming from " + (pg.following.empty() ? expected : pg.following)});
  }
  if (pg.lag_bytes >= 0 || pg.lag_seconds >= 0) {
    parts.push_back({LagState(pg.lag_bytes, pg.lag_seconds, t),
                     LagText(std::max<int64_t>(pg.lag_bytes, 0), pg.lag_seconds)});
  }
  return parts;
}

}  // namespace

double VolumeFacts::UsedPercent() const {
  double usable = static_cast<double>(used_bytes) + static_cast<double>(free_bytes);
  if (usable <= 0) return 0;
  return 100.0 * static_cast<double>(used_bytes) / usable;
}

HealthCheck EvaluateVmCheck(const VmFacts& vm, const CheckThresholds& t) {
  std::vector<Part> parts;
  if (auto used = DiskPercent(vm)) {
    parts.push_back({Grade(*used, t.disk_warning_percent, t.disk_critical_percent),
                     "disk " + Percent(*used) + " used (" + FormatBytes(vm.volume->free_bytes) +
                         " free of " + FormatBytes(vm.volume->size_bytes) + ")"});
  } else {
    parts.push_back({CheckState::kWarning, "disk usage unknown (the data volume cannot be read)"});
  }
  if (vm.load) {
    int cpus = std::max(1, vm.cpus);
    double per_cpu = vm.load->load5 / cpus;
    parts.push_back({Grade(per_cpu, t.load_warning_per_cpu, t.load_critical_per_cpu),
                     "load " + Fixed(vm.load->load1, 2) + " " + Fixed(vm.load->load5, 2) + " " +
                         Fixed(vm.load->load15, 2) + " on " + std::to_string(cpus) +
                         (cpus == 1 ? " CPU" : " CPUs")});
  }
  std::string pressure;
  double worst = 0;
  auto add = [&](const char* what, const std::optional<double>& v) {
    if (!v) return;
    pressure += std::string(pressure.empty() ? "" : " ") + what + " " + Trimmed(*v) + "%";
    worst = std::max(worst, *v);
  };
  add("cpu", vm.pressure.cpu);
  add("memory", vm.pressure.memory);
  add("io", vm.pressure.io);
  if (!pressure.empty()) {
    parts.push_back({Grade(worst, t.pressure_warning_percent, t.pressure_critical_percent),
                     "pressure " + pressure + " over 60 s"});
  }
  return Combine("vm", std::move(parts));
}

HealthCheck EvaluatePgCheck(const InstanceFacts& f, const CheckThresholds& t) {
  const PgFacts& pg = f.pg;
  if (!pg.accepting) return Combine("pg", {NotAccepting(f.manager, "")});
  std::vector<Part> parts;
  int64_t open = std::max<int64_t>(1, pg.max_connections - pg.reserved_connections);
  double used_percent =
      100.0 * static_cast<double>(pg.connections_used) / static_cast<double>(open);
  parts.push_back(
      {Grade(used_percent, t.connections_warning_percent, t.connections_critical_percent),
       std::to_string(pg.connections_used) + " of " + std::to_string(pg.max_connections) +
           " connections used, " + std::to_string(pg.reserved_connections) + " reserved"});
  std::vector<Part> role_parts =
      pg.role == InstanceRole::kPrimary ? PrimaryParts(pg, t) : ReplicaParts(pg, f.manager, t);
  parts.insert(parts.end(), role_parts.begin(), role_parts.end());
  return Combine("pg", std::move(parts));
}

HealthCheck EvaluateRoleCheck(const InstanceFacts& f, const CheckThresholds& t) {
  const PgFacts& pg = f.pg;
  const ManagerFacts& m = f.manager;
  if (!pg.accepting) return Combine("role", {NotAccepting(m, "unknown: ")});
  std::optional<double> disk = DiskPercent(f.vm);
  bool disk_full = disk && *disk >= t.readonly_disk_percent;
  std::string disk_note = disk ? "disk " + Percent(*disk) + " full" : "";
  if (pg.role == InstanceRole::kPrimary) {
    if (!pg.writable) {
      std::string why = disk_full              ? disk_note
                        : pg.default_read_only ? "default_transaction_read_only is on"
                                               : "";
      return Combine(
          "role", {{CheckState::kCritical, "read-only" + (why.empty() ? "" : " (" + why + ")")}});
    }
    if (m.has_spec && m.desired_role == InstanceRole::kReplica) {
      return Combine("role", {{CheckState::kCritical,
                               "leader, but the controller wants a replica (demotion pending)"}});
    }
    if (disk_full) {
      return Combine("role", {{CheckState::kWarning,
                               "leader (" + disk_note + "; writes fail when it is full)"}});
    }
    return Combine("role", {{CheckState::kPassing, "leader"}});
  }
  if (m.has_spec && m.desired_role == InstanceRole::kPrimary) {
    return Combine("role", {{CheckState::kWarning, "replica (promotion pending)"}});
  }
  return Combine("role", {{CheckState::kPassing, "replica"}});
}

std::vector<HealthCheck> EvaluateChecks(const InstanceFacts& f, const CheckThresholds& t) {
  return {EvaluateVmCheck(f.vm, t), EvaluatePgCheck(f, t), EvaluateRoleCheck(f, t)};
}

CheckState WorstState(const std::vector<HealthCheck>& checks) {
  CheckState s = CheckState::kPassing;
  for (const HealthCheck& c : checks) s = Worse(s, c.state);
  return s;
}

std::optional<LoadFacts> ParseLoadavg(const std::string& text) {
  std::istringstream in(text);
  LoadFacts l;
  if (!(in >> l.load1 >> l.load5 >> l.load15)) return std::nullopt;
  if (l.load1 < 0 || l.load5 < 0 || l.load15 < 0) return std::nullopt;
  return l;
}

std::optional<double> ParsePressureAvg60(const std::string& text) {
  // "some avg10=0.00 avg60=1.25 avg300=0.50 total=12345"
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("some ", 0) != 0) continue;
    auto at = line.find(" avg60=");
    if (at == std::string::npos) return std::nullopt;
    const char* start = line.c_str() + at + 7;
    char* end = nullptr;
    double v = std::strtod(start, &end);
    if (end == start || v < 0 || !std::isfinite(v)) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 0) return "unknown";
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return (v >= 100 ? Fixed(v, 0) : Trimmed(v)) + " " + kUnits[unit];
}

std::string FormatSeconds(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "unknown";
  if (seconds < 10) return Trimmed(seconds) + " s";
  if (seconds < 120) return Fixed(seconds, 0) + " s";
  if (seconds < 7200) return Fixed(seconds / 60, 0) + " min";
  return Trimmed(seconds / 3600) + " h";
}

}  // namespace petrel
