#include "reconcilers/lease_keeper.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <vector>

namespace petrel {

namespace {

Millis Ms(int64_t v) { return Millis(v); }

int64_t MsBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration_cast<Millis>(to - from).count();
}

}  // namespace

Millis LeaseKeeper::RenewPeriod(int64_t duration_ms) {
  return Ms(std::max<int64_t>(duration_ms / 5, 20));
}

LeaseKeeper::LeaseKeeper(InstanceClient& instances, Clock& clock, LeaseKeeperOptions options)
    : instances_(instances), clock_(clock), options_(std::move(options)), started_(clock.Now()) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void LeaseKeeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseKeeper::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // Real time, not clock_: the tick only paces the loop; due times use clock_.
    cv_.wait_for(lock, options_.tick, [this] { return stop_; });
    if (stop_) break;
    lock.unlock();
    RenewDue();
    lock.lock();
  }
}

void LeaseKeeper::SetTarget(const ObjectKey& cluster, std::optional<LeaseTarget> target,
                            const Json& pod) {
  std::optional<Target> renew_now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!target) {
      targets_.erase(cluster);
      return;
    }
    auto it = targets_.find(cluster);
    bool changed = it == targets_.end() || it->second.lease.pod != target->pod ||
                   it->second.lease.term != target->term;
    if (changed) {
      Target t{*target, pod, clock_.Now()};
      targets_[cluster] = t;
      renew_now = t;
    } else {
      it->second.lease.duration_ms = target->duration_ms;
      it->second.pod = pod;  // the Pod's IP may have changed
    }
  }
  if (renew_now) Renew(cluster, *renew_now);
}

void LeaseKeeper::Forget(const ObjectKey& cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  targets_.erase(cluster);
  std::erase_if(evidence_, [&](const auto& kv) { return std::get<0>(kv.first) == cluster; });
  std::erase_if(accepted_, [&](const auto& kv) { return std::get<0>(kv.first) == cluster; });
  std::erase_if(unanswered_, [&](const auto& kv) { return kv.first.first == cluster; });
}

void LeaseKeeper::RenewDue() {
  if (!options_.leading()) return;
  std::vector<std::pair<ObjectKey, Target>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SteadyTime now = clock_.Now();
    for (auto& [cluster, t] : targets_) {
      if (t.last_attempt && now - *t.last_attempt < RenewPeriod(t.lease.duration_ms)) continue;
      t.last_attempt = now;
      due.emplace_back(cluster, t);
    }
  }
  if (due.size() == 1) {
    Renew(due[0].first, due[0].second);
    return;
  }
  // In parallel: a primary that does not answer must not delay the others' renewals.
  std::vector<std::future<void>> running;
  running.reserve(due.size());
  for (const auto& [cluster, t] : due) {
    running.push_back(std::async(std::launch::async, [this, cluster = cluster, t = t] {
      Renew(cluster, t);
    }));
  }
  for (auto& f : running) f.wait();
}

void LeaseKeeper::Renew(const ObjectKey& cluster, const Target& target) {
  LeaseGrant grant;
  grant.term = target.lease.term;
  grant.duration_ms = target.lease.duration_ms;
  SteadyTime sent = clock_.Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    evidence_[HolderKey{cluster, target.lease.pod, target.lease.term}].pending.insert(sent);
  }
  Result<LeaseReply> reply =
      instances_.PutLease(target.pod, grant, RenewPeriod(target.lease.duration_ms));
  SteadyTime done = clock_.Now();
  HolderKey key{cluster, target.lease.pod, target.lease.term};
  Code code = reply.ok() ? Code::kOk : reply.status().code();
  bool answered = code == Code::kOk || code == Code::kConflict || code == Code::kInvalid ||
                  code == Code::kUnauthorized || code == Code::kNotFound;
  bool first_failure = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Only the first failure in a row wakes the cluster (or the first that goes unanswered
    // after refusals): the reconcile it triggers takes over, and polls fast while it replaces
    // a primary; repeating it would only add load.
    bool& was_unanswered = unanswered_[{cluster, target.lease.pod}];
    if (auto it = targets_.find(cluster); it != targets_.end()) {
      first_failure = !reply.ok() && (!it->second.failing || (!answered && !was_unanswered));
      it->second.failing = !reply.ok();
    }
    was_unanswered = !answered;
    Evidence& e = evidence_[key];
    e.duration_ms = std::max(e.duration_ms, grant.duration_ms);
    if (auto it = e.pending.find(sent); it != e.pending.end()) e.pending.erase(it);
    if (reply.ok() && reply->term == grant.term) {
      if (!e.acked || sent >= e.last_acked_send) {
        e.acked = true;
        e.last_ack = done;
        e.last_acked_send = sent;
      }
    } else if (!e.failed_send || sent > *e.failed_send) {
      e.failed_send = sent;
    }
  }
  if (!first_failure) return;
  spdlog::warn("{}: renewing the lease of {} (term {}) failed: {}", cluster.ToString(),
               target.lease.pod, target.lease.term, reply.status().ToString());
  if (options_.on_renewal_failed) options_.on_renewal_failed(cluster);
}

void LeaseKeeper::NoteTermAccepted(const ObjectKey& cluster, const std::string& instance,
                                   int64_t term) {
  std::lock_guard<std::mutex> lock(mu_);
  accepted_.try_emplace(HolderKey{cluster, instance, term}, clock_.Now());
}

std::optional<int64_t> LeaseKeeper::OldLeaseExpiresInMs(const ObjectKey& cluster,
                                                        const std::string& holder, int64_t term,
                                                        int64_t duration_ms) const {
  std::lock_guard<std::mutex> lock(mu_);
  // The earliest sighting of any other instance in a later term: the revocation.
  std::optional<SteadyTime> revoked;
  for (const auto& [key, at] : accepted_) {
    const auto& [c, instance, t] = key;
    if (c == cluster && instance != holder && t > term && (!revoked || at < *revoked)) {
      revoked = at;
    }
  }
  if (!revoked) return std::nullopt;
  const Evidence* e = nullptr;
  if (auto it = evidence_.find(HolderKey{cluster, holder, term}); it != evidence_.end()) {
    e = &it->second;
  }
  Millis duration = Ms(std::max(duration_ms, e ? e->duration_ms : 0));
  Millis timeout = RenewPeriod(duration.count());
  // A grant by a controller before this one, read by the instance within its timeout.
  SteadyTime end = started_ + timeout + duration;
  if (e && e->acked) end = std::max(end, e->last_ack + duration);
  // A grant whose answer never came may still have been read, up to its timeout.
  if (e && e->failed_send) end = std::max(end, *e->failed_send + timeout + duration);
  if (e && !e->pending.empty()) end = std::max(end, *e->pending.rbegin() + timeout + duration);
  bool rounds_impossible = e && e->acked &&
                           *revoked + options_.safety_margin <= e->last_acked_send + duration / 2;
  if (!rounds_impossible) end = std::max(end, *revoked + duration);
  end += options_.safety_margin;
  return std::max<int64_t>(0, MsBetween(clock_.Now(), end));
}

bool LeaseKeeper::Unanswered(const ObjectKey& cluster, const std::string& instance) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = unanswered_.find({cluster, instance});
  return it != unanswered_.end() && it->second;
}

}  // namespace petrel
