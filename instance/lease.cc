#include "instance/lease.h"

#include <algorithm>

namespace petrel {
namespace {

int64_t ToMs(std::chrono::nanoseconds d) { return std::chrono::duration_cast<Millis>(d).count(); }

// The shortest pause between failed confirmation rounds, whatever the duration.
constexpr Millis kMinRetryDelay{10};
// The shortest watchdog gap counted as a stall, whatever the duration.
constexpr Millis kMinStall{100};

}  // namespace

const char* LeaseStateName(LeaseState state) {
  switch (state) {
    case LeaseState::kNotRequired:
      return "not-required";
    case LeaseState::kValid:
      return "valid";
    case LeaseState::kNeedsConfirmation:
      return "needs-confirmation";
    case LeaseState::kExpired:
      return "expired";
  }
  return "unknown";
}

bool LeaseRequired(const InstanceSpec& spec) {
  return spec.role == InstanceRole::kPrimary && spec.lease_duration_ms > 0;
}

LeaderLease::LeaderLease(Clock& clock) : clock_(clock) {}

void LeaderLease::DropLocked() {
  expiry_.reset();
  refreshed_ = {};
  duration_ = Millis(0);
  next_round_ = {};
}

void LeaderLease::SetSpec(const std::optional<InstanceSpec>& spec) {
  std::lock_guard<std::mutex> l(mu_);
  const InstanceRole role = spec ? spec->role : InstanceRole::kNone;
  const int64_t term = spec ? spec->term : 0;
  if (!spec || role != role_ || term != term_) DropLocked();
  has_spec_ = spec.has_value();
  role_ = role;
  term_ = term;
  required_ = spec && LeaseRequired(*spec);
  spec_duration_ = Millis(spec ? spec->lease_duration_ms : 0);
  peers_ = spec ? spec->peers : std::vector<Peer>{};
}

Result<LeaseReply> LeaderLease::Grant(const LeaseGrant& grant) {
  std::lock_guard<std::mutex> l(mu_);
  if (!has_spec_) {
    return ConflictError("no spec has been accepted yet: PUT /spec with role primary and term " +
                         std::to_string(grant.term) + " before granting a lease");
  }
  if (role_ != InstanceRole::kPrimary) {
    return ConflictError("this instance's accepted spec is role " + std::string(RoleName(role_)) +
                         " (term " + std::to_string(term_) +
                         "); a lease is only granted to a primary");
  }
  if (grant.term != term_) {
    return ConflictError("lease for term " + std::to_string(grant.term) +
                         " refused: the accepted spec is for term " + std::to_string(term_));
  }
  if (grant.duration_ms <= 0) {
    return InvalidError("durationMs must be > 0, got " + std::to_string(grant.duration_ms));
  }
  const SteadyTime now = clock_.Now();
  if (now < refuse_grants_until_) {
    return UnavailableError(
        "this instance did not run for " + std::to_string(last_stall_.count()) +
        " ms (frozen or starved); a grant sent before it resumed could be stale, so grants are "
        "refused for another " +
        std::to_string(ToMs(refuse_grants_until_ - now)) + " ms: retry then");
  }
  duration_ = Millis(grant.duration_ms);
  expiry_ = now + duration_;
  refreshed_ = now;
  next_round_ = {};
  return LeaseReply{term_, grant.duration_ms};
}

LeaseState LeaderLease::StateLocked(SteadyTime now) const {
  if (!required_) return LeaseState::kNotRequired;
  if (!expiry_ || now >= *expiry_) return LeaseState::kExpired;
  if (now - refreshed_ >= duration_ / 2) return LeaseState::kNeedsConfirmation;
  return LeaseState::kValid;
}

LeaseState LeaderLease::State() const {
  std::lock_guard<std::mutex> l(mu_);
  return StateLocked(clock_.Now());
}

int64_t LeaderLease::RemainingMs() const {
  std::lock_guard<std::mutex> l(mu_);
  const SteadyTime now = clock_.Now();
  switch (StateLocked(now)) {
    case LeaseState::kNotRequired:
      return -1;
    case LeaseState::kExpired:
      return 0;
    case LeaseState::kValid:
    case LeaseState::kNeedsConfirmation:
      break;
  }
  // Round up so a lease with time left never reads as 0 (expired).
  return std::max<int64_t>(1, ToMs(*expiry_ - now));
}

int64_t LeaderLease::term() const {
  std::lock_guard<std::mutex> l(mu_);
  return term_;
}

std::string LeaderLease::DescribeExpiry() const {
  std::lock_guard<std::mutex> l(mu_);
  const std::string term = "term " + std::to_string(term_);
  if (!expiry_) {
    return "no leadership lease for " + term + " has been granted since this instance started";
  }
  const SteadyTime now = clock_.Now();
  if (now < *expiry_) return "the leadership lease for " + term + " is valid";
  return "the leadership lease for " + term + " expired " + std::to_string(ToMs(now - *expiry_)) +
         " ms ago without renewal or confirmation by every peer";
}

void LeaderLease::NoteTickGap(Millis gap) {
  std::lock_guard<std::mutex> l(mu_);
  if (!required_ || gap < std::max(kMinStall, spec_duration_ / 4)) return;
  last_stall_ = gap;
  refuse_grants_until_ = clock_.Now() + spec_duration_;
}

std::optional<ConfirmationRound> LeaderLease::BeginConfirmation() {
  std::lock_guard<std::mutex> l(mu_);
  const SteadyTime now = clock_.Now();
  if (StateLocked(now) != LeaseState::kNeedsConfirmation) return std::nullopt;
  if (round_in_flight_ || now < next_round_ || peers_.empty()) return std::nullopt;
  round_in_flight_ = true;
  // Every answer must arrive well before the lease runs out to be of use.
  const auto call_timeout =
      std::max(Millis(1), std::chrono::duration_cast<Millis>((*expiry_ - now) / 2));
  return ConfirmationRound{term_, now, call_timeout, peers_};
}

void LeaderLease::FinishConfirmation(const ConfirmationRound& round, bool all_confirmed) {
  std::lock_guard<std::mutex> l(mu_);
  round_in_flight_ = false;
  const SteadyTime now = clock_.Now();
  if (round.term != term_ || !required_ || !expiry_ || now >= *expiry_) return;
  if (!all_confirmed) {
    next_round_ = now + std::max(kMinRetryDelay, duration_ / 10);
    return;
  }
  expiry_ = std::max(*expiry_, round.started + duration_);
  refreshed_ = std::max(refreshed_, round.started);
}

PeerConfirmReply DecidePeerConfirmation(const std::optional<InstanceSpec>& spec,
                                        const PeerConfirmRequest& request) {
  const std::string asked = "term " + std::to_string(request.term);
  if (!spec) return {false, "no spec has been accepted yet"};
  if (spec->role != InstanceRole::kReplica) {
    return {false, "this instance's spec is role " + std::string(RoleName(spec->role)) +
                       ", not replica; only replicas confirm a primary"};
  }
  if (spec->term != request.term) {
    return {false, "asked to confirm " + asked + " but this replica's spec is for term " +
                       std::to_string(spec->term)};
  }
  return {true, ""};
}

}  // namespace petrel
