#include "controller/leader_election.h"

#include <cmath>
#include <thread>

#include <spdlog/spdlog.h>

namespace petrel {
namespace {
std::string Str(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t Int(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}
Json SpecOf(const Json& lease) {
  auto it = lease.find("spec");
  return it != lease.end() && it->is_object() ? *it : Json::object();
}
}  // namespace

Status LeaderElectionConfig::Validate() const {
  if (namespace_.empty() || name.empty() || identity.empty()) {
    return InvalidError(
        "leader election needs a namespace, a lease name and an identity; set "
        "--leader-election-namespace and --leader-election-id");
  }
  if (retry_period.count() <= 0 || renew_deadline <= retry_period ||
      lease_duration <= renew_deadline) {
    return InvalidError(
        "leader election timings must satisfy lease-duration > renew-deadline > retry-period > "
        "0 (defaults 15s, 10s, 2s)");
  }
  return Status::Ok();
}

LeaderElector::LeaderElector(KubeClient& client, LeaderElectionConfig config,
                             LeaderCallbacks callbacks, Clock& clock, MetricsRegistry& metrics)
    : client_(client),
      config_(std::move(config)),
      callbacks_(std::move(callbacks)),
      clock_(clock),
      leader_gauge_(metrics
                        .Gauge("leader_election_master_status",
                               "1 while this replica holds the leader lease, else 0.", {"name"})
                        .WithLabels({config_.name})) {
  leader_gauge_.Set(0);
}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::SetLeading(bool leading) {
  leading_ = leading;
  leader_gauge_.Set(leading ? 1 : 0);
}

std::string LeaderElector::ObservedHolder() const {
  std::lock_guard<std::mutex> lock(mu_);
  return Str(observed_spec_, "holderIdentity");
}

Json LeaderElector::NewSpec(const Json* old_spec, SteadyTime /*now*/) const {
  std::string wall = FormatRfc3339Micro(clock_.WallNow());
  auto seconds = std::chrono::duration<double>(config_.lease_duration).count();
  Json spec = {{"holderIdentity", config_.identity},
               {"leaseDurationSeconds", std::max<int64_t>(1, std::llround(std::ceil(seconds)))},
               {"renewTime", wall}};
  if (old_spec != nullptr && Str(*old_spec, "holderIdentity") == config_.identity) {
    spec["acquireTime"] = old_spec->value("acquireTime", wall);
    spec["leaseTransitions"] = Int(*old_spec, "leaseTransitions");
  } else {
    spec["acquireTime"] = wall;
    spec["leaseTransitions"] = old_spec != nullptr ? Int(*old_spec, "leaseTransitions") + 1 : 0;
  }
  return spec;
}

bool LeaderElector::TryAcquireOrRenew() {
  const SteadyTime now = clock_.Now();
  const ObjectKey key{config_.namespace_, config_.name};
  Result<Json> got = client_.Get(resources::kLease, key);
  if (!got.ok()) {
    if (got.status().code() != Code::kNotFound) {
      spdlog::warn("leader election: reading lease {}: {}", key.ToString(),
                   got.status().ToString());
      return false;
    }
    Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"namespace", config_.namespace_}, {"name", config_.name}}},
                  {"spec", NewSpec(nullptr, now)}};
    Result<Json> created = client_.Create(resources::kLease, lease);
    if (!created.ok()) {
      spdlog::debug("leader election: creating lease {}: {}", key.ToString(),
                    created.status().ToString());
      return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    observed_spec_ = SpecOf(*created);
    observed_time_ = now;
    last_renew_ = now;
    return true;
  }

  Json spec = SpecOf(*got);
  SteadyTime observed_at;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (spec != observed_spec_) {
      observed_spec_ = spec;
      observed_time_ = now;
    }
    observed_at = observed_time_;
  }
  const std::string holder = Str(spec, "holderIdentity");
  const auto lease = std::chrono::seconds(Int(spec, "leaseDurationSeconds"));
  if (!holder.empty() && holder != config_.identity && observed_at + lease > now) {
    return false;  // someone else holds a lease that has not expired by our observation
  }

  Json updated = *got;
  updated["spec"] = NewSpec(&spec, now);
  Result<Json> written = client_.Update(resources::kLease, updated);
  if (!written.ok()) {
    spdlog::debug("leader election: updating lease {}: {}", key.ToString(),
                  written.status().ToString());
    return false;
  }
  if (holder != config_.identity) {
    spdlog::info("leader election: {} acquired lease {} (previous holder: {})", config_.identity,
                 key.ToString(), holder.empty() ? "none" : holder);
  }
  std::lock_guard<std::mutex> lock(mu_);
  observed_spec_ = SpecOf(*written);
  observed_time_ = now;
  last_renew_ = now;
  return true;
}

bool LeaderElector::SleepUnlessStopped(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

StopReason LeaderElector::Run() {
  spdlog::info("leader election: {} campaigning for lease {}/{}", config_.identity,
               config_.namespace_, config_.name);
  while (!TryAcquireOrRenew()) {
    if (!SleepUnlessStopped(config_.retry_period)) return StopReason::kStopped;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return StopReason::kStopped;
  }
  SetLeading(true);
  if (callbacks_.on_started_leading) callbacks_.on_started_leading();

  // Renewals run on their own thread so that a hung request cannot delay the deadline
  // check below: leadership ends on time even if the API server stops answering.
  bool renewer_done = false;
  std::thread renewer([this, &renewer_done] {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, config_.retry_period,
                         [&] { return stopping_ || renewer_done; })) {
          return;
        }
      }
      if (TryAcquireOrRenew()) cv_.notify_all();
    }
  });

  StopReason reason;
  {
    const bool real_clock = &clock_ == &Clock::Real();
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (stopping_) {
        reason = StopReason::kStopped;
        break;
      }
      SteadyTime deadline = last_renew_ + config_.renew_deadline;
      if (clock_.Now() >= deadline) {
        reason = StopReason::kLost;
        break;
      }
      if (real_clock) {
        cv_.wait_until(lock, deadline);
      } else {
        cv_.wait_for(lock, std::chrono::milliseconds(5));
      }
    }
    renewer_done = true;
  }
  cv_.notify_all();
  SetLeading(false);
  if (reason == StopReason::kLost) {
    spdlog::error("leader election: {} could not renew lease {}/{} for {} ms; leadership lost",
                  config_.identity, config_.namespace_, config_.name,
                  config_.renew_deadline.count());
  }
  if (callbacks_.on_stopped_leading) callbacks_.on_stopped_leading(reason);
  renewer.join();
  return reason;
}

void LeaderElector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

Status LeaderElector::Release() {
  const ObjectKey key{config_.namespace_, config_.name};
  PETREL_ASSIGN_OR_RETURN(Json lease, client_.Get(resources::kLease, key));
  Json spec = SpecOf(lease);
  if (Str(spec, "holderIdentity") != config_.identity) return Status::Ok();
  std::string wall = FormatRfc3339Micro(clock_.WallNow());
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["renewTime"] = wall;
  spec["acquireTime"] = wall;
  lease["spec"] = spec;
  Result<Json> written = client_.Update(resources::kLease, lease);
  if (!written.ok()) return written.status().Annotate("releasing lease " + key.ToString());
  spdlog::info("leader election: {} released lease {}", config_.identity, key.ToString());
  SetLeading(false);
  return Status::Ok();
}

}  // namespace petrel
