// How the cluster reconciler talks to `petrel instance` processes: read an instance's state,
// hand it the spec it should converge to. The contract (fields, HTTP routes) is api/instance.h.
// The HTTP implementation lives in reconcilers/http_instance_client.h, in its own library so
// that the planner and its tests do not link the network stack; unit and envtest tests of the
// reconciler use a fake.
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include "api/instance.h"
#include "core/object.h"
#include "core/status.h"

namespace petrel {

class InstanceClient {
 public:
  virtual ~InstanceClient() = default;
  // GET /status of the instance running in `pod` (a Pod object as read from the API).
  // Unavailable when the pod has no IP yet or the instance does not answer in time.
  virtual Result<InstanceStatus> GetStatus(const Json& pod) = 0;
  // PUT /spec. Ok once the instance accepted the spec (it converges asynchronously);
  // Invalid/Conflict carry the instance's message when it refuses.
  virtual Status PutSpec(const Json& pod, const InstanceSpec& spec) = 0;
};

}  // namespace petrel
