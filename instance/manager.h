// InstanceManager: the converge loop of `petrel instance`. It holds the accepted
// InstanceSpec (persisted on the volume so a restart resumes without the controller), runs
// observe -> PlanInstanceAction -> execute on its own thread, and publishes InstanceStatus.
// Level-triggered: it wakes every `tick` and at once when a new spec is accepted.
//
// It also holds the leadership lease (instance/lease.h) and runs the LeadershipGuard that
// fences postgres the moment the lease expires (instance/leadership.h); the converge loop
// then keeps postgres down until a new lease arrives.
//
// Thread-safety: AcceptSpec, CurrentSpec, GetStatus, GrantLease and ConfirmLeader are safe
// from any thread (HTTP handlers); Start/Stop from the owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "api/instance.h"
#include "core/clock.h"
#include "instance/leadership.h"
#include "instance/lease.h"
#include "instance/node.h"

namespace petrel {

struct ManagerOptions {
  NodeOptions node;
  std::chrono::milliseconds tick{1000};
  std::chrono::milliseconds watchdog_tick{20};
  // Asks a peer to confirm leadership (HttpPeerAsker in production); unset: peers are never
  // asked, so only the controller's renewals keep the lease.
  AskPeerFn ask_peer;
};

class InstanceManager {
 public:
  InstanceManager(ManagerOptions options, Clock& clock);
  ~InstanceManager();

  // Prepares the volume and loads a persisted spec; then starts the loop thread.
  Status Start();
  // Stops the loop and shuts postgres down (fast); returns once it has exited.
  void Stop();

  // Validates the transition, persists the spec and wakes the loop. Conflict (409) when the
  // transition is impossible; the accepted spec is unchanged then.
  Status AcceptSpec(const InstanceSpec& spec);
  std::optional<InstanceSpec> CurrentSpec() const;
  // The published status with the lease facts as of now (term, time left; not ready while
  // a required lease is not held).
  InstanceStatus GetStatus() const;

  // PUT /lease: Conflict when the accepted spec is not role primary of the grant's term.
  Result<LeaseReply> GrantLease(const LeaseGrant& grant);
  // POST /confirm-leader, answered from the accepted spec.
  PeerConfirmReply ConfirmLeader(const PeerConfirmRequest& request) const;

 private:
  void Loop();
  void Tick();
  Status Execute(const InstanceAction& action, const InstanceSpec& spec,
                 const ObservedInstance& observed);
  void Wake();
  void Publish(const ObservedInstance& o, const SqlFacts& f, const InstanceSpec& spec,
               const InstanceAction& action);

  ManagerOptions options_;
  Clock& clock_;
  std::atomic<bool> stop_{false};
  PostgresNode node_;  // used by the loop thread only (after Start), but FenceImmediately
  LeaderLease lease_;
  LeadershipGuard guard_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::optional<InstanceSpec> spec_;  // guarded by mu_
  InstanceStatus status_;             // guarded by mu_
  bool woken_ = false;                // guarded by mu_

  // Loop-thread state.
  std::string error_;            // last failed action, shown until an action succeeds
  std::string note_;             // a lasting remark (data moved aside) ...
  int64_t note_generation_ = 0;  // ... shown while this spec generation is current
  int failures_ = 0;
  SteadyTime retry_after_{};
  std::thread thread_;
};

}  // namespace petrel
