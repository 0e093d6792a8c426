// Kubernetes Events (events.k8s.io/v1) for what users should see in `kubectl describe` /
// `kubectl get events`: failovers, refused changes, detaches. Notes are human sentences that
// say what happened and what to do; they never contain secrets.
// Thread-safety: implementations are safe to call from many threads. Recording is best-effort:
// a failure to write an event is logged, never returned to the reconciler.
#pragma once

#include <string>

#include "controller/kube_client.h"
#include "core/clock.h"
#include "core/object.h"

namespace petrel {

enum class EventType { kNormal, kWarning };

class EventRecorder {
 public:
  virtual ~EventRecorder() = default;
  // regarding: the object the event is about (its apiVersion/kind/metadata are used).
  // reason: UpperCamelCase ("ScaledUp"); action: what the controller did ("Scale").
  virtual void Record(const Json& regarding, EventType type, const std::string& reason,
                      const std::string& action, const std::string& note) = 0;
};

// Writes each event as a new events.k8s.io/v1 Event through a KubeClient. Callers record
// transitions (something changed), not steady states, so repeats stay rare.
class KubeEventRecorder : public EventRecorder {
 public:
  KubeEventRecorder(KubeClient& client, std::string controller_name,
                    Clock& clock = Clock::Real());
  void Record(const Json& regarding, EventType type, const std::string& reason,
              const std::string& action, const std::string& note) override;

 private:
  KubeClient& client_;
  std::string controller_;
  Clock& clock_;
};

}  // namespace petrel
