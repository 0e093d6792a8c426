// How the cluster reconciler talks to `petrel instance` processes: read an instance's state,
// hand it the spec it should converge to, renew a primary's lease (reconcilers/lease_keeper.h). The contract (fields, HTTP routes) is api/instance.h.
// The HTTP implementation lives in reconcilers/http_instance_client.h, in its own library so
// that the planner and its tests do not link the network stack; unit and envtest tests of the
// reconciler use a fake.
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include "api/instance.h"
#include "core/clock.h"
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

  // GET /status bounded by `timeout` (the reconciler asks an instance that missed its lease
  // renewal with a short one). The default ignores the bound and calls GetStatus().
  virtual Result<InstanceStatus> GetStatusWithin(const Json& pod, Millis timeout) {
    (void)timeout;
    return GetStatus(pod);
  }
  // PUT /lease (api/instance.h, "Leadership"), bounded by `timeout`: a renewal must fail
  // fast. Conflict carries the instance's reason when it refuses (not the primary of that
  // term); Unavailable/Timeout when it does not answer. The default refuses: a client
  // without the lease API cannot keep a primary writable.
  virtual Result<LeaseReply> PutLease(const Json& pod, const LeaseGrant& grant, Millis timeout) {
    (void)grant;
    (void)timeout;
    return InternalError("this instance client cannot renew the lease of " + meta::Name(pod));
  }
};

}  // namespace petrel
