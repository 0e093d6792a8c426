#include "instance/api.h"

#include "core/log.h"

namespace petrel {
namespace {

HttpResponse MakeJson(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump() + "\n";
  return r;
}

// Errors use the shape of a Kubernetes Status so clients can show `message` as is.
HttpResponse Error(int status, const std::string& reason, const std::string& message,
                   const std::vector<StatusCause>& causes = {}) {
  Json j = {{"kind", "Status"},
            {"status", "Failure"},
            {"code", status},
            {"reason", reason},
            {"message", message}};
  if (!causes.empty()) {
    Json cs = Json::array();
    for (const auto& c : causes) {
      cs.push_back({{"field", c.field}, {"reason", c.reason}, {"message", c.message}});
    }
    j["details"] = {{"causes", cs}};
  }
  return MakeJson(status, j);
}

HttpResponse MethodNotAllowed(const HttpRequest& req, const std::string& allowed) {
  HttpResponse r =
      Error(405, "MethodNotAllowed", req.method + " is not allowed here; use " + allowed);
  r.headers["allow"] = allowed;
  return r;
}

}  // namespace

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Length is not secret (tokens have a fixed length); the content is.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

InstanceApi::InstanceApi(InstanceManager& manager, std::string token)
    : manager_(manager), token_(std::move(token)) {}

void InstanceApi::Register(HttpServer& server) {
  server.Handle("/healthz", [this](const HttpRequest& r) { return Healthz(r); });
  server.Handle("/readyz", [this](const HttpRequest& r) { return Readyz(r); });
  server.Handle("/status", [this](const HttpRequest& r) { return Status(r); });
  server.Handle("/spec", [this](const HttpRequest& r) { return Spec(r); });
  server.Handle("/metrics", [this](const HttpRequest& r) { return Metrics(r); });
  server.Handle("/snapshot", [this](const HttpRequest& r) { return Snapshot(r); });
  server.Handle("/lease", [this](const HttpRequest& r) { return Lease(r); });
  server.Handle("/confirm-leader", [this](const HttpRequest& r) { return ConfirmLeader(r); });
}

bool InstanceApi::Authorized(const HttpRequest& req) const {
  auto it = req.headers.find("authorization");
  if (it == req.headers.end() || token_.empty()) return false;
  static const std::string kPrefix = "Bearer ";
  if (it->second.compare(0, kPrefix.size(), kPrefix) != 0) return false;
  return ConstantTimeEquals(it->second.substr(kPrefix.size()), token_);
}

std::optional<HttpResponse> InstanceApi::Unauthorized(const HttpRequest& req,
                                                      const std::string& what) const {
  if (Authorized(req)) return std::nullopt;
  HttpResponse r = Error(401, "Unauthorized",
                         what +
                             " needs the header Authorization: Bearer <token> with the "
                             "token from the cluster's petrel Secret");
  r.headers["www-authenticate"] = "Bearer";
  return r;
}

HttpResponse InstanceApi::Healthz(const HttpRequest& req) const {
  if (req.method != "GET" && req.method != "HEAD") return MethodNotAllowed(req, "GET");
  HttpResponse r;
  r.body = "ok\n";
  return r;
}

HttpResponse InstanceApi::Readyz(const HttpRequest& req) const {
  if (req.method != "GET" && req.method != "HEAD") return MethodNotAllowed(req, "GET");
  InstanceStatus s = manager_.GetStatus();
  HttpResponse r;
  if (s.ready) {
    r.body = "ok\n";
  } else {
    r.status = 503;
    r.body = "not ready: " + s.phase + (s.message.empty() ? "" : ": " + s.message) + "\n";
  }
  return r;
}

HttpResponse InstanceApi::Status(const HttpRequest& req) const {
  if (req.method != "GET") return MethodNotAllowed(req, "GET");
  InstanceStatus s = manager_.GetStatus();
  if (monitor_) monitor_->Annotate(&s);
  if (positions_) positions_->Refresh(&s);
  return MakeJson(200, s.ToJson());
}

HttpResponse InstanceApi::Metrics(const HttpRequest& req) const {
  return ServeMetrics(monitor_, req);
}

HttpResponse ServeMetrics(const InstanceMonitor* monitor, const HttpRequest& req) {
  if (req.method != "GET" && req.method != "HEAD") return MethodNotAllowed(req, "GET");
  if (!monitor) return Error(503, "ServiceUnavailable", "metrics are not collected here");
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = monitor->MetricsText();
  return r;
}

HttpResponse InstanceApi::Spec(const HttpRequest& req) {
  if (req.method == "GET") {
    auto spec = manager_.CurrentSpec();
    if (!spec) return Error(404, "NotFound", "no spec has been accepted yet (PUT /spec)");
    return MakeJson(200, spec->ToJson());
  }
  if (req.method != "PUT") return MethodNotAllowed(req, "GET, PUT");
  if (auto denied = Unauthorized(req, "PUT /spec")) return *denied;
  Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error(400, "BadRequest", "the body is not valid JSON; send an InstanceSpec object");
  }
  auto spec = InstanceSpec::FromJson(j);
  if (!spec.ok()) {
    return Error(400, "Invalid", spec.status().message(), spec.status().causes());
  }
  petrel::Status st = manager_.AcceptSpec(*spec);
  if (!st.ok()) {
    if (st.code() == Code::kConflict) return Error(409, "Conflict", st.message());
    spdlog::error("accepting spec generation {}: {}", spec->generation, st.ToString());
    return Error(500, "InternalError", st.message());
  }
  return MakeJson(202, {{"accepted", true}, {"generation", spec->generation}});
}

HttpResponse InstanceApi::Snapshot(const HttpRequest& req) {
  if (req.method != "POST") return MethodNotAllowed(req, "POST");
  if (!Authorized(req)) {
    HttpResponse r = Error(401, "Unauthorized",
                           "POST /snapshot needs the header Authorization: Bearer <token> with "
                           "the token from the cluster's petrel Secret");
    r.headers["www-authenticate"] = "Bearer";
    return r;
  }
  Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error(400, "BadRequest", "the body is not valid JSON; send {\"dir\": \"/abs/path\"}");
  }
  auto request = SnapshotRequest::FromJson(j);
  if (!request.ok()) {
    return Error(400, "Invalid", request.status().message(), request.status().causes());
  }
  auto info = manager_.TakeSnapshot(*request);
  if (!info.ok()) {
    const petrel::Status& st = info.status();
    switch (st.code()) {
      case Code::kInvalid:
        return Error(400, "Invalid", st.message());
      case Code::kConflict:
        return Error(409, "Conflict", st.message());
      case Code::kUnavailable:
      case Code::kTimeout:
      case Code::kCancelled:
        return Error(503, "ServiceUnavailable", st.message());
      default:
        spdlog::error("snapshot into {}: {}", request->dir, st.ToString());
        return Error(500, "InternalError", st.message());
    }
  }
  return MakeJson(200, info->ToJson());
}

}  // namespace petrel

namespace petrel {

HttpResponse InstanceApi::Lease(const HttpRequest& req) {
  if (req.method != "PUT") return MethodNotAllowed(req, "PUT");
  if (auto denied = Unauthorized(req, "PUT /lease")) return *denied;
  Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error(400, "BadRequest", "the body is not valid JSON; send a LeaseGrant object");
  }
  auto grant = LeaseGrant::FromJson(j);
  if (!grant.ok()) return Error(400, "Invalid", grant.status().message(), grant.status().causes());
  auto reply = manager_.GrantLease(*grant);
  if (!reply.ok()) {
    switch (reply.status().code()) {
      case Code::kConflict:
        return Error(409, "Conflict", reply.status().message());
      case Code::kUnavailable: {
        HttpResponse r = Error(503, "ServiceUnavailable", reply.status().message());
        r.headers["retry-after"] = "1";
        return r;
      }
      default:
        return Error(400, "Invalid", reply.status().message());
    }
  }
  return MakeJson(200, reply->ToJson());
}

HttpResponse InstanceApi::ConfirmLeader(const HttpRequest& req) {
  if (req.method != "POST") return MethodNotAllowed(req, "POST");
  if (auto denied = Unauthorized(req, "POST /confirm-leader")) return *denied;
  Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error(400, "BadRequest", "the body is not valid JSON; send a PeerConfirmRequest object");
  }
  auto request = PeerConfirmRequest::FromJson(j);
  if (!request.ok()) {
    return Error(400, "Invalid", request.status().message(), request.status().causes());
  }
  return MakeJson(200, manager_.ConfirmLeader(*request).ToJson());
}

AskPeerFn HttpPeerAsker(std::string token) {
  return [token = std::move(token)](const Peer& peer, const PeerConfirmRequest& request,
                                    Millis timeout) -> Result<PeerConfirmReply> {
    const bool ipv6 = peer.host.find(':') != std::string::npos;
    const std::string url = "http://" + (ipv6 ? "[" + peer.host + "]" : peer.host) + ":" +
                            std::to_string(peer.port) + "/confirm-leader";
    HttpCallOptions opts;
    opts.timeout = timeout;
    opts.headers["authorization"] = "Bearer " + token;
    opts.headers["content-type"] = "application/json";
    PETREL_ASSIGN_OR_RETURN(HttpResponse r, HttpCall("POST", url, request.ToJson().dump(), opts));
    if (r.status != 200) {
      return UnavailableError("POST /confirm-leader answered HTTP " + std::to_string(r.status));
    }
    Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return UnavailableError("POST /confirm-leader answered no JSON");
    return PeerConfirmReply::FromJson(j);
  };
}

}  // namespace petrel
