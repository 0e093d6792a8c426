// InstanceMonitor: gathers the facts behind the health checks and metrics of one instance —
// statvfs of the data volume, /proc/loadavg, /proc/pressure/*, and SQL on its own connection
// to the local postgres (over the private unix socket) — every `interval` on its own thread,
// evaluates the checks (instance/checks.h) and keeps the result for the API: the checks and
// standbys go into GET /status, the metrics text to GET /metrics.
//
// It only observes. It never changes postgres and never takes part in converging (the
// InstanceManager does that); a failing check changes nothing by itself.
//
// Thread-safety: Annotate, MetricsText and Checks are safe from any thread; Start/Stop from
// the owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/instance.h"
#include "core/clock.h"
#include "instance/checks.h"
#include "pg/conn.h"

namespace petrel {

struct MonitorOptions {
  std::string name;
  std::string cluster;
  std::string volume_path;  // statvfs target: the data volume (PGDATA's parent)
  std::string socket_dir;   // postgres's unix socket directory (trust for the superuser)
  uint16_t port = kPostgresPort;
  std::string proc_root = "/proc";
  std::chrono::milliseconds interval{5000};
  CheckThresholds thresholds;
};

// What the monitor needs from the converge loop, read on every round.
struct ManagerView {
  std::function<std::optional<InstanceSpec>()> spec;
  std::function<InstanceStatus()> status;
};

// Reads the facts that need no postgres: statvfs and /proc. Missing files leave the
// corresponding facts empty.
VmFacts GatherVmFacts(const std::string& volume_path, const std::string& proc_root);

// Reads the SQL facts from an open connection; an error when a query fails (the connection is
// then likely gone).
Result<PgFacts> GatherPgFacts(PgConn& conn);

class InstanceMonitor {
 public:
  InstanceMonitor(MonitorOptions options, ManagerView manager, Clock& clock);
  ~InstanceMonitor();
  InstanceMonitor(const InstanceMonitor&) = delete;
  InstanceMonitor& operator=(const InstanceMonitor&) = delete;

  // Gathers once (so the first /metrics has data), then every interval on a thread.
  void Start();
  void Stop();
  // One round, on the calling thread (Start's thread uses it; tests may too).
  void GatherOnce();

  // Sets status->checks and status->standbys from the last round (left as they are when no
  // round has completed yet).
  void Annotate(InstanceStatus* status) const;
  std::vector<HealthCheck> Checks() const;
  // The Prometheus text of the last round.
  std::string MetricsText() const;

 private:
  void Loop();
  std::optional<PgConn>& Connection();

  MonitorOptions options_;
  ManagerView manager_;
  Clock& clock_;
  std::optional<PgConn> conn_;  // used by the gathering thread only

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                // guarded by mu_
  bool gathered_ = false;            // guarded by mu_
  InstanceFacts facts_;              // guarded by mu_
  std::vector<HealthCheck> checks_;  // guarded by mu_
  SteadyTime gathered_at_{};         // guarded by mu_
  std::mutex gather_mu_;             // one round at a time
  std::thread thread_;
};

}  // namespace petrel
