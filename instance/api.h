// The instance's HTTP API (the contract is listed in api/instance.h): /healthz, /readyz,
// /status, GET and PUT /spec, /metrics, POST /snapshot, PUT /lease, POST /confirm-leader.
// Handlers are plain functions of an HttpRequest so tests can call them without a socket;
// Register() mounts them on an HttpServer. HttpPeerAsker is the client side of
// /confirm-leader.
//
// Thread-safety: handlers may run concurrently (the manager synchronises).
#pragma once

#include <optional>
#include <string>

#include "instance/leadership.h"
#include "instance/live_positions.h"
#include "instance/manager.h"
#include "instance/monitor.h"
#include "net/http.h"

namespace petrel {

class InstanceApi {
 public:
  // `token`: the bearer token mutating calls must present (never logged).
  InstanceApi(InstanceManager& manager, std::string token);

  void Register(HttpServer& server);
  // Adds the monitor's checks and standbys to /status and serves its /metrics (without one,
  // /metrics is 503). Call before Register.
  void SetMonitor(const InstanceMonitor* monitor) { monitor_ = monitor; }
  // Reads a replica's WAL positions live for /status (without it, /status shows the converge
  // loop's last look). Call before Register.
  void SetLivePositions(LivePositions* positions) { positions_ = positions; }

  HttpResponse Healthz(const HttpRequest& req) const;
  HttpResponse Readyz(const HttpRequest& req) const;
  HttpResponse Status(const HttpRequest& req) const;
  HttpResponse Spec(const HttpRequest& req);
  HttpResponse Metrics(const HttpRequest& req) const;
  HttpResponse Snapshot(const HttpRequest& req);
  HttpResponse Lease(const HttpRequest& req);
  HttpResponse ConfirmLeader(const HttpRequest& req);

 private:
  bool Authorized(const HttpRequest& req) const;
  // Nullopt when authorised; else the 401 response for `what` ("PUT /spec").
  std::optional<HttpResponse> Unauthorized(const HttpRequest& req, const std::string& what) const;

  InstanceManager& manager_;
  std::string token_;
  const InstanceMonitor* monitor_ = nullptr;
  LivePositions* positions_ = nullptr;
};

// GET /metrics from the monitor's last round, for the API and the metrics port alike.
HttpResponse ServeMetrics(const InstanceMonitor* monitor, const HttpRequest& req);
// POST http://<peer>/confirm-leader with `token` (the instance API token every member of a
// cluster shares), bounded by the timeout the confirmer passes.
AskPeerFn HttpPeerAsker(std::string token);

// Equality that takes the same time wherever the first difference is.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace petrel
