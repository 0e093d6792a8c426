// InstanceClient over the instance HTTP API (api/instance.h): GET /status, PUT /spec and
// PUT /lease on the pod IP, port kInstanceApiPort, with the bearer token from the cluster's `<cluster>-petrel`
// Secret (read through the cache, never logged). A separate library from the planner so that
// the pure reconciler code does not link the network stack.
//
// Every call is bounded by `timeout` (connect + send + receive); the reconciler retries on its
// next pass, so there is no retry loop here.
// Thread-safety: safe from many threads (stateless apart from the injected reader).
#pragma once

#include <chrono>

#include "controller/object_reader.h"
#include "net/http.h"
#include "reconcilers/instance_client.h"

namespace petrel {

class HttpInstanceClient : public InstanceClient {
 public:
  // `api_port`: where instances serve their API (tests bind port 0 and pass it).
  explicit HttpInstanceClient(const ObjectReader& reader,
                              std::chrono::milliseconds timeout = std::chrono::seconds(3),
                              uint16_t api_port = kInstanceApiPort);
  Result<InstanceStatus> GetStatus(const Json& pod) override;
  Status PutSpec(const Json& pod, const InstanceSpec& spec) override;
  Result<InstanceStatus> GetStatusWithin(const Json& pod, Millis timeout) override;
  Result<LeaseReply> PutLease(const Json& pod, const LeaseGrant& grant, Millis timeout) override;

 private:
  Result<std::string> Token(const Json& pod) const;

  Result<std::string> BaseUrl(const Json& pod) const;
  // PUT of a JSON body with the instance API token, bounded by `timeout`.
  Result<HttpResponse> AuthorizedPut(const Json& pod, const std::string& path, const Json& body,
                                     Millis timeout) const;

  const ObjectReader& reader_;
  std::chrono::milliseconds timeout_;
  uint16_t api_port_;
};

}  // namespace petrel
