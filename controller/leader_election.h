// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules, so that only
// one `petrel controller` replica reconciles at a time.
//
//  - Acquire: read the Lease; create it when absent; otherwise take it only when it is ours,
//    has no holder (released), or has expired. Expiry is judged by *local* observation time:
//    the moment this replica last saw the record change, plus the record's
//    leaseDurationSeconds. Clocks of different machines are never compared.
//  - Every write is an Update carrying the resourceVersion that was read (optimistic
//    concurrency): two candidates racing for an expired lease cannot both win.
//  - Renew every retry period. If no renewal has succeeded for renew_deadline, leadership is
//    lost: on_stopped_leading(kLost) is called at once, from a timer independent of the
//    (possibly hung) renew request. renew_deadline < lease_duration leaves the gap in which
//    the caller must stop every writer before another replica may take over; the manager
//    exits the process.
//  - Release (clean shutdown): holderIdentity cleared and leaseDurationSeconds=1, so a
//    successor takes over at once instead of waiting out the lease.
//
// Metric: leader_election_master_status{name=<lease name>} is 1 while leading.
// Thread-safety: Run() on one thread; Stop(), IsLeader() from any thread. TryAcquireOrRenew()
// and Release() are for tests and for the manager after Run() has returned.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "controller/kube_client.h"
#include "core/clock.h"
#include "core/metrics.h"

namespace petrel {

struct LeaderElectionConfig {
  std::string namespace_;
  std::string name;      // the Lease's name
  std::string identity;  // unique per replica (hostname + random suffix)
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};

  // lease_duration > renew_deadline > retry_period > 0, names set; Invalid otherwise.
  Status Validate() const;
};

enum class StopReason { kLost, kStopped };

struct LeaderCallbacks {
  std::function<void()> on_started_leading;
  // kLost: renewals failed for renew_deadline; stop writing now. kStopped: Stop() was called.
  std::function<void(StopReason)> on_stopped_leading;
};

class LeaderElector {
 public:
  LeaderElector(KubeClient& client, LeaderElectionConfig config, LeaderCallbacks callbacks,
                Clock& clock = Clock::Real(),
                MetricsRegistry& metrics = MetricsRegistry::Default());
  ~LeaderElector();

  // Campaigns until leading, then renews until leadership is lost or Stop() is called.
  // Returns why it stopped. Does not release the lease: call Release() after the work that
  // leadership protected has stopped.
  StopReason Run();
  void Stop();
  bool IsLeader() const { return leading_.load(); }

  // One attempt to acquire or renew; true when this replica holds the lease afterwards.
  bool TryAcquireOrRenew();
  // Gives the lease up if this replica holds it.
  Status Release();

  // The holder last observed ("" when none or unknown).
  std::string ObservedHolder() const;

 private:
  Json NewSpec(const Json* old_spec, SteadyTime now) const;
  bool SleepUnlessStopped(std::chrono::milliseconds d);  // false when stopped
  void SetLeading(bool leading);

  KubeClient& client_;
  const LeaderElectionConfig config_;
  const LeaderCallbacks callbacks_;
  Clock& clock_;
  Gauge& leader_gauge_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Json observed_spec_;          // the Lease spec last read or written
  SteadyTime observed_time_{};  // when observed_spec_ last changed, by our clock
  SteadyTime last_renew_{};     // start of the last successful acquire/renew
  std::atomic<bool> leading_{false};
};

}  // namespace petrel
