// LeaseKeeper: the controller's half of a primary's leadership lease (api/instance.h,
// "Leadership"). It renews the lease of every cluster's primary (PUT /lease) every fifth of
// the lease duration, each call bounded by that same fifth, and keeps the timing evidence a
// failover needs to know when the old primary's lease has *certainly* expired.
//
// Who tells it what: after each plan the cluster reconciler calls SetTarget() with the lease
// the plan names (ClusterPlan::lease; none while a failover waits for the old lease). A new
// holder or term is renewed at once, inside SetTarget(), so that a just-promoted primary does
// not wait for the next tick. The first of a run of failed renewals calls `on_renewal_failed`
// with the cluster (the reconciler enqueues it at once: fast failure detection without the
// 10 s requeue).
// Reconciles only run while this controller leads, so targets only exist while it leads;
// `leading` is checked again before every renewal round.
//
// The bound on the old lease (OldLeaseExpiresInMs). The instance counts a lease from the moment
// it *received* the grant, so a grant this controller saw acknowledged at `ack` ends by
// ack + duration. A grant that got no answer (timed out, or still in flight) is assumed read
// by the end of its timeout (send + timeout + duration), and a previous controller (before this
// process started at `start`) may have sent one just before it died (start + timeout +
// duration). A primary that has not been renewed for
// half the duration asks all its peers; while they all confirm, each round extends the lease
// to round start + duration. The controller stops that by giving a replica the next term
// (revocation, recorded with NoteTermAccepted when a PUT /spec of a higher term is
// acknowledged or a status shows it): rounds that start later fail. So the lease ends by
//   max(start, ack) + duration                 when the revocation was seen before
//                                              acked_send + duration/2 (no round can have
//                                              started before it: rounds start at the earliest
//                                              half a duration after the last receipt, which
//                                              is after that renewal was sent),
//   max(start, ack, revocation) + duration     otherwise,
// plus a safety margin (the instance's fence watchdog tick and clock-rate slack). Without a
// recorded revocation there is no bound (nullopt): the peers may keep extending the lease.
// Caveat (instance side): a grant can sit unread in a frozen primary's socket buffer and be
// read when it thaws, long after its timeout; the bound is only sound if the instance never
// honours such a grant (it never revives a lease of a term that has already expired, and a
// grant delayed past its timeout finds the lease expired).
//
// Timing, default 1000 ms lease: renewals every 200 ms, each bounded by 200 ms. A frozen
// primary misses a renewal within 0-200 ms, which fails 200 ms later; the old lease then ends
// at most ~1.26 s after the freeze (failed send + timeout + duration + margin), and the
// promotion follows.
//
// Thread-safety: every public method is safe from any thread. Renewals run on the keeper's
// thread (Start) or the caller's (RenewDue, SetTarget), never under the internal lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "core/clock.h"
#include "core/types.h"
#include "reconcilers/cluster_plan.h"
#include "reconcilers/instance_client.h"

namespace petrel {

struct LeaseKeeperOptions {
  // False while this controller is not the leader: nothing is renewed.
  std::function<bool()> leading = [] { return true; };
  // A renewal failed (the instance did not answer or refused): look at the cluster now.
  std::function<void(const ObjectKey& cluster)> on_renewal_failed;
  // How often the background thread looks for due renewals.
  Millis tick{25};
  // Added to every bound: the instance's fence watchdog tick (20 ms) and clock-rate slack.
  Millis safety_margin{60};
};

class LeaseKeeper {
 public:
  LeaseKeeper(InstanceClient& instances, Clock& clock, LeaseKeeperOptions options = {});
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Renews due leases on a background thread until Stop() (or destruction).
  void Start();
  void Stop();

  // The lease `cluster` needs now: `target` names the primary (its Pod object is `pod`, used
  // to reach it); nullopt stops renewing. A target with a new holder or term is renewed
  // before this returns.
  void SetTarget(const ObjectKey& cluster, std::optional<LeaseTarget> target, const Json& pod);
  // The cluster is gone: forget its target and evidence.
  void Forget(const ObjectKey& cluster);

  // One renewal round: every target whose renewal is due (last attempt a fifth of the
  // duration ago) is renewed, in parallel. Start() calls it every tick; tests call it.
  void RenewDue();

  // `instance` was seen holding `term` (its PUT /spec was acknowledged, or its status says
  // so); the first sighting per (instance, term) is kept.
  void NoteTermAccepted(const ObjectKey& cluster, const std::string& instance, int64_t term);

  // Milliseconds until every lease `holder` may hold for `term` has certainly expired (0 =
  // expired); nullopt when no other instance has been seen in a higher term. `duration_ms` is
  // the lease duration the cluster's spec asks for (the larger of it and the last granted
  // duration is used).
  std::optional<int64_t> OldLeaseExpiresInMs(const ObjectKey& cluster, const std::string& holder,
                                             int64_t term, int64_t duration_ms) const;

  // True when the last renewal of `instance`'s lease failed because it did not answer (not
  // when it refused): the reconciler asks such an instance for its status with a short
  // timeout.
  bool Unanswered(const ObjectKey& cluster, const std::string& instance) const;

  // The renewal period and per-call timeout for a lease of `duration_ms`.
  static Millis RenewPeriod(int64_t duration_ms);

 private:
  struct Target {
    LeaseTarget lease;
    Json pod;
    std::optional<SteadyTime> last_attempt;
    bool failing = false;  // the last renewal failed
  };
  // What this process knows about the grants it sent to one (cluster, instance, term).
  struct Evidence {
    bool acked = false;
    SteadyTime last_ack{};         // when the latest acknowledged renewal returned
    SteadyTime last_acked_send{};  // when that renewal was sent
    std::optional<SteadyTime> failed_send;  // the latest renewal that got no acknowledgement
    std::multiset<SteadyTime> pending;      // renewals in flight, by send time
    int64_t duration_ms = 0;
  };
  using HolderKey = std::tuple<ObjectKey, std::string, int64_t>;  // cluster, instance, term

  void Renew(const ObjectKey& cluster, const Target& target);
  void Loop();

  InstanceClient& instances_;
  Clock& clock_;
  const LeaseKeeperOptions options_;
  const SteadyTime started_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::map<ObjectKey, Target> targets_;
  std::map<HolderKey, Evidence> evidence_;
  std::map<HolderKey, SteadyTime> accepted_;  // first sighting of an instance in a term
  std::map<std::pair<ObjectKey, std::string>, bool> unanswered_;
};

}  // namespace petrel
