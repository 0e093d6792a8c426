// LeadershipGuard: the two threads that enforce a primary's leadership lease
// (instance/lease.h), apart from the converge loop so that neither a long action (pg_rewind,
// pg_promote) nor a slow peer can delay a fence.
//
//  - The watchdog wakes every `watchdog_tick` (20 ms) on the steady clock. When the lease is
//    required and expired it calls `fence` (PostgresNode::FenceImmediately: SIGKILL to every
//    postgres backend, SIGQUIT to the postmaster, when postgres may be writable), then
//    `on_fenced` (wakes the
//    converge loop, which reaps postgres, reports the fence and keeps it down). It asks for
//    SCHED_FIFO priority 1 so that it runs before any ordinary thread that becomes runnable
//    at the same moment; without CAP_SYS_NICE it runs at normal priority (logged once).
//  - The confirmer starts a confirmation round when the lease is due one (the controller has
//    not renewed it for half the duration): every peer in the spec is asked in parallel
//    (POST /confirm-leader, each call bounded by half the remaining lease); the lease is
//    extended only when all confirm.
//
// The residual window. After SIGSTOP of the whole pod (petrel instance and postgres) and a
// SIGCONT later than the lease, every thread is runnable again at once. The watchdog's timed
// wait has already passed its deadline, so its first act is the check, and the fence
// signals every postgres process directly (PidHandle::KillChildrenAndSignal); backends take
// SIGKILL on their next return from the kernel, without flushing anything more. Measured on
// the 2-core test machine with SCHED_FIFO: the watchdog runs within microseconds of the
// SIGCONT and the fence is sent about 0.2 ms later (most of it reading the children list). A commit
// can still be acknowledged in that window only if a backend thawed with a commit already in
// progress (its WAL flush done before the freeze, the client's ack pending) or gets scheduled and
// completes a whole commit before the watchdog runs: with SCHED_FIFO that is the scheduling
// latency of one wake-up on another core (microseconds); at normal priority it is one
// scheduler time slice (a few ms on a loaded machine). The same holds for the watchdog's own
// tick when not frozen: an expiry is noticed at most `watchdog_tick` late, so the controller
// must wait lease + tick + clock-rate slack before promoting another member.
// What this guard cannot fence: postgres kept running while `petrel instance` alone is
// stopped or starved; the leader endpoint closing its connections to a replaced primary is
// the other half of the fence (issue 8).
//
// Thread-safety: Start/Stop from the owner's thread; the callbacks run on the guard's
// threads and must be thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "api/instance.h"
#include "core/clock.h"
#include "instance/lease.h"

namespace petrel {

// Asks one peer to confirm `request` within the timeout; errors (unreachable, timeout, bad
// answer) count as no. The HTTP implementation is HttpPeerAsker (instance/api.h).
using AskPeerFn =
    std::function<Result<PeerConfirmReply>(const Peer&, const PeerConfirmRequest&, Millis)>;

struct LeadershipGuardOptions {
  std::string name;  // this instance, sent to peers
  Millis watchdog_tick{20};
  Millis confirm_tick{10};  // how often the confirmer looks whether a round is due
  std::function<bool()> fence;
  std::function<void()> on_fenced;
  AskPeerFn ask_peer;
};

class LeadershipGuard {
 public:
  LeadershipGuard(LeaderLease& lease, LeadershipGuardOptions options);
  ~LeadershipGuard();

  void Start();
  // Joins both threads; a round in flight finishes first (bounded by its call timeout).
  void Stop();

  // Asks every peer of the round in parallel; true when all confirmed. `why` gets the
  // refusals ("db-2: ...; db-3: ...") otherwise.
  bool RunRound(const ConfirmationRound& round, std::string* why);

 private:
  void Watchdog();
  void Confirmer();
  // Waits `d` or until Stop(); false when stopping.
  bool Sleep(Millis d);

  LeaderLease& lease_;
  LeadershipGuardOptions o_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread watchdog_, confirmer_;
};

}  // namespace petrel
