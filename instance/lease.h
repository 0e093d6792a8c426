// The leadership lease of a primary (issue 8), as pure decisions over an injected Clock.
//
// A primary whose accepted spec has lease_duration_ms > 0 may run writable only while it
// holds a lease for the spec's term (see "Leadership" in api/instance.h). This class keeps
// that lease and answers the questions the instance asks of it:
//   - Grant(): PUT /lease. Accepted only when the accepted spec is role primary with the same
//     term; the lease then runs `duration` from the moment of receipt (the instance's steady
//     clock), so it never outlives the controller's own view of it.
//   - State(): not required / valid / needs confirmation (the controller has not renewed for
//     half the duration) / expired (never granted for this term, or ran out: fence).
//   - BeginConfirmation() / FinishConfirmation(): the peer failsafe. A round asks every peer;
//     only when all of them confirm is the lease extended, by the duration counted from when
//     the round *started*. A failed round is retried after a tenth of the duration, until
//     the lease runs out. A confirmation never revives a lease that already expired: only a
//     new grant does (the fenced primary waits for the controller).
//   - NoteTickGap(): the watchdog reports how long it went without running. A gap of a
//     quarter of the duration (at least 100 ms) means this process was frozen or starved;
//     a PUT /lease the controller sent before or during the stall, and gave up on, may be
//     read from the socket only now, and granting it would extend the lease past what the
//     controller believes. So grants are refused (Unavailable, 503) for one lease duration
//     after such a stall; the lease already held is unaffected and runs out on time. The
//     controller's PUT /lease timeout must therefore be at least a quarter of the duration:
//     a shorter stall is answered before the controller gives up.
// SetSpec() follows the accepted spec: a lease belongs to one term, and a spec of another
// term or another role drops it. A restarted instance starts without a lease.
//
// DecidePeerConfirmation() is the replica's side of the failsafe: it confirms a primary
// only while its own accepted spec is role replica of the same term. The controller revokes
// confirmation by giving a replica a spec with a higher term.
//
// The steady clock does not advance while the whole machine is suspended (CLOCK_MONOTONIC);
// it does advance while processes are stopped (SIGSTOP), which is the freeze Petrel fences.
//
// Thread-safety: LeaderLease is thread-safe (one internal mutex, held only for O(1) work).
// The free functions are pure.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/instance.h"
#include "core/clock.h"
#include "core/status.h"

namespace petrel {

enum class LeaseState {
  kNotRequired,        // not a primary with lease_duration_ms > 0: no lease applies
  kValid,              // held, and the controller renewed it recently
  kNeedsConfirmation,  // held, but not renewed (or confirmed) for half the duration
  kExpired,            // not held: never granted for this term, or it ran out
};
const char* LeaseStateName(LeaseState state);

// Whether a spec makes its instance need a lease.
bool LeaseRequired(const InstanceSpec& spec);

// One confirmation round: ask `peers` about `term`, each call bounded by `call_timeout`.
struct ConfirmationRound {
  int64_t term = 0;
  SteadyTime started{};
  Millis call_timeout{0};
  std::vector<Peer> peers;
};

class LeaderLease {
 public:
  explicit LeaderLease(Clock& clock);

  // Follows the accepted spec (nullopt: none yet). Drops the lease when the term or the
  // role changes.
  void SetSpec(const std::optional<InstanceSpec>& spec);

  // PUT /lease. Conflict (409) with a message saying why when the grant does not fit the
  // accepted spec; the lease is unchanged then.
  Result<LeaseReply> Grant(const LeaseGrant& grant);

  LeaseState State() const;
  // For InstanceStatus: -1 when no lease applies, 0 when expired, else the time left.
  int64_t RemainingMs() const;
  int64_t term() const;
  // One human sentence about a lease that is not held, for status messages.
  std::string DescribeExpiry() const;

  // The watchdog's time between two of its checks (see the header comment).
  void NoteTickGap(Millis gap);

  // Starts a round when one is due: the lease needs confirmation, no round is in flight,
  // the retry delay after a failed round has passed, and there are peers to ask.
  std::optional<ConfirmationRound> BeginConfirmation();
  // Ends the round begun by BeginConfirmation(). Extends the lease only when every peer
  // confirmed, the term is unchanged and the lease has not expired meanwhile.
  void FinishConfirmation(const ConfirmationRound& round, bool all_confirmed);

 private:
  LeaseState StateLocked(SteadyTime now) const;
  void DropLocked();

  Clock& clock_;
  mutable std::mutex mu_;
  // From the accepted spec.
  bool has_spec_ = false;
  InstanceRole role_ = InstanceRole::kNone;
  int64_t term_ = 0;
  bool required_ = false;
  Millis spec_duration_{0};
  std::vector<Peer> peers_;
  // The lease itself.
  std::optional<SteadyTime> expiry_;  // nullopt: never granted for this term
  SteadyTime refreshed_{};            // last renewal, or start of the last confirmed round
  Millis duration_{0};                // of the last grant
  bool round_in_flight_ = false;
  SteadyTime next_round_{};
  // After a stall: grants are refused until then.
  SteadyTime refuse_grants_until_{};
  Millis last_stall_{0};
};

// The replica's answer to POST /confirm-leader, from its accepted spec.
PeerConfirmReply DecidePeerConfirmation(const std::optional<InstanceSpec>& spec,
                                        const PeerConfirmRequest& request);

}  // namespace petrel
