// A model of `petrel instance` processes for tests of the cluster reconciler that cannot run
// Postgres (envtest has no kubelet): each instance converges at once to the last spec PUT to
// it and reports a status derived from it. Thread-safe.
#pragma once

#include <map>
#include <mutex>

#include "reconcilers/instance_client.h"

namespace petrel {

class FakeInstances : public InstanceClient {
 public:
  Result<InstanceStatus> GetStatus(const Json& pod) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string name = meta::Name(pod);
    if (!pod.contains("status") || pod["status"].value("podIP", "").empty()) {
      return UnavailableError("pod " + name + " has no IP yet");
    }
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
        primary_up |= other_spec.role == InstanceRole::kPrimary && !other_spec.fenced;
      }
      s.streaming = s.running && primary_up;
      s.lag_bytes = 0;
    }
    return s;
  }

  Status PutSpec(const Json& pod, const InstanceSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    specs_[meta::Name(pod)] = spec;
    ++puts_;
    return Status::Ok();
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
  int puts_ = 0;
};

}  // namespace petrel
