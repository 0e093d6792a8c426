// A model of `petrel instance` processes for tests of the cluster reconciler that cannot run
// Postgres (envtest has no kubelet): each instance converges at once to the last spec PUT to
// it and reports a status derived from it. Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "reconcilers/instance_client.h"

namespace petrel {

class FakeInstances : public InstanceClient {
 public:
  Result<InstanceStatus> GetStatus(const Json& pod) override {
    std::unique_lock<std::mutex> lock(mu_);
    std::string name = meta::Name(pod);
    if (hung_.count(name)) {
      // A frozen process: the request sits unanswered until the client gives up (here: until
      // the test thaws it).
      thawed_.wait(lock, [&] { return !hung_.count(name); });
      return TimeoutError("GET /status of " + name + ": timed out");
    }
    if (!pod.contains("status") || pod["status"].value("podIP", "").empty()) {
      return UnavailableError("pod " + name + " has no IP yet");
    }
    if (down_.count(name)) return TimeoutError("GET /status of " + name + ": timed out");
    InstanceStatus s;
    s.name = name;
    auto it = specs_.find(name);
    if (it == specs_.end()) return s;
    const InstanceSpec& spec = it->second;
    s.initialized = true;
    s.fenced = spec.fenced;
    s.running = !spec.fenced;
    s.ready = s.running;
    s.role = spec.role;
    s.term = spec.term;
    s.spec_generation = spec.generation;
    s.system_identifier = "7300000000000000001";
    s.phase = s.running ? "running" : "fenced";
    s.timeline = 1;
    if (spec.role == InstanceRole::kPrimary) {
      s.current_lsn = "0/3000060";
    } else {
      s.replay_lsn = "0/3000060";
      s.received_lsn = "0/3000060";
      bool primary_up = false;
      for (const auto& [other, other_spec] : specs_) {
        primary_up |= other_spec.role == InstanceRole::kPrimary && !other_spec.fenced &&
                      !down_.count(other);
      }
      s.streaming = s.running && primary_up;
      s.lag_bytes = 0;
    }
    return s;
  }

  Status PutSpec(const Json& pod, const InstanceSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_.count(meta::Name(pod))) return TimeoutError("PUT /spec: timed out");
    specs_[meta::Name(pod)] = spec;
    ++puts_;
    return Status::Ok();
  }

  // PUT /lease: granted to the primary of the same term, as the instance does.
  Result<LeaseReply> PutLease(const Json& pod, const LeaseGrant& grant, Millis) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string name = meta::Name(pod);
    if (down_.count(name)) return TimeoutError("PUT /lease to " + name + ": timed out");
    auto it = specs_.find(name);
    if (it == specs_.end() || it->second.role != InstanceRole::kPrimary ||
        it->second.term != grant.term) {
      return ConflictError("PUT /lease to " + name + " refused: not the primary of term " +
                           std::to_string(grant.term));
    }
    ++leases_[name];
    return LeaseReply{grant.term, grant.duration_ms};
  }

  // A frozen instance: GET /status hangs until SetHung(name, false); every other call fails
  // at once (PUT /lease and PUT /spec are bounded by short timeouts in the real client).
  void SetHung(const std::string& name, bool hung) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (hung) {
        hung_.insert(name);
        down_.insert(name);
      } else {
        hung_.erase(name);
        down_.erase(name);
      }
    }
    thawed_.notify_all();
  }

  // An instance that stops answering (a frozen or crashed pod), or answers again.
  void SetDown(const std::string& name, bool down) {
    std::lock_guard<std::mutex> lock(mu_);
    if (down) {
      down_.insert(name);
    } else {
      down_.erase(name);
    }
  }
  int leases(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(name);
    return it == leases_.end() ? 0 : it->second;
  }

  int puts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return puts_;
  }
  std::map<std::string, InstanceSpec> specs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return specs_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, InstanceSpec> specs_;
  std::set<std::string> down_;
  std::set<std::string> hung_;
  std::condition_variable thawed_;
  std::map<std::string, int> leases_;
  int puts_ = 0;
};

}  // namespace petrel
