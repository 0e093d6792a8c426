// The instance's HTTP API (the contract is listed in api/instance.h): /healthz, /readyz,
// /status, GET and PUT /spec, /metrics, POST /snapshot. Handlers are plain functions of an
// HttpRequest so tests can
// call them without a socket; Register() mounts them on an HttpServer.
//
// Thread-safety: handlers may run concurrently (the manager synchronises).
#pragma once

#include <string>

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

  HttpResponse Healthz(const HttpRequest& req) const;
  HttpResponse Readyz(const HttpRequest& req) const;
  HttpResponse Status(const HttpRequest& req) const;
  HttpResponse Spec(const HttpRequest& req);
  HttpResponse Metrics(const HttpRequest& req) const;
  HttpResponse Snapshot(const HttpRequest& req);

 private:
  bool Authorized(const HttpRequest& req) const;

  InstanceManager& manager_;
  std::string token_;
  const InstanceMonitor* monitor_ = nullptr;
};

// GET /metrics from the monitor's last round, for the API and the metrics port alike.
HttpResponse ServeMetrics(const InstanceMonitor* monitor, const HttpRequest& req);

// Equality that takes the same time wherever the first difference is.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace petrel
