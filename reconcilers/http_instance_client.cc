#include "reconcilers/http_instance_client.h"

#include <algorithm>

#include "core/base64.h"
#include "net/http.h"
#include "reconcilers/cluster_plan.h"

namespace petrel {


HttpInstanceClient::HttpInstanceClient(const ObjectReader& reader,
                                       std::chrono::milliseconds timeout, uint16_t api_port)
    : reader_(reader), timeout_(timeout), api_port_(api_port) {}

Result<std::string> HttpInstanceClient::BaseUrl(const Json& pod) const {
  std::string ip;
  if (pod.contains("status") && pod["status"].is_object()) {
    ip = pod["status"].value("podIP", "");
  }
  if (ip.empty()) {
    return UnavailableError("pod " + meta::Name(pod) +
                            " has no IP yet (not scheduled or starting)");
  }
  if (ip.find(':') != std::string::npos) ip = "[" + ip + "]";
  return "http://" + ip + ":" + std::to_string(api_port_);
}

namespace {

Status FromHttp(const HttpResponse& r, const std::string& what) {
  std::string message = r.body.substr(0, 512);
  if (r.status >= 200 && r.status < 300) return Status::Ok();
  if (r.status == 400) return InvalidError(what + " refused: " + message);
  if (r.status == 401 || r.status == 403) {
    return Status(Code::kUnauthorized, what + ": the instance rejected the API token");
  }
  if (r.status == 409) return ConflictError(what + " refused: " + message);
  return UnavailableError(what + ": HTTP " + std::to_string(r.status) + " " + message);
}

}  // namespace

Result<std::string> HttpInstanceClient::Token(const Json& pod) const {
  std::string cluster = meta::Label(pod, kClusterLabel);
  std::string name = SecretName(cluster, "petrel");
  ObjectPtr secret = reader_.Get(resources::kSecret, {meta::Namespace(pod), name});
  if (!secret) return UnavailableError("Secret " + name + " does not exist yet");
  const Json& data = secret->contains("data") ? (*secret)["data"] : Json();
  std::optional<std::string> token;
  if (data.is_object() && data.contains("password") && data["password"].is_string()) {
    token = Base64Decode(data["password"].get<std::string>());
  }
  if (!token || token->empty()) {
    return InternalError("Secret " + name + " has no usable key \"password\"");
  }
  return *token;
}

Result<InstanceStatus> HttpInstanceClient::GetStatus(const Json& pod) {
  return GetStatusWithin(pod, timeout_);
}

Result<InstanceStatus> HttpInstanceClient::GetStatusWithin(const Json& pod, Millis timeout) {
  PETREL_ASSIGN_OR_RETURN(std::string base, BaseUrl(pod));
  HttpCallOptions options;
  options.timeout = std::min(timeout, timeout_);
  PETREL_ASSIGN_OR_RETURN(HttpResponse r, HttpCall("GET", base + "/status", "", options));
  std::string what = "GET /status of " + meta::Name(pod);
  PETREL_RETURN_IF_ERROR(FromHttp(r, what));
  Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return UnavailableError(what + ": the answer is not JSON");
  return InstanceStatus::FromJson(body);
}

Result<HttpResponse> HttpInstanceClient::AuthorizedPut(const Json& pod, const std::string& path,
                                                       const Json& body, Millis timeout) const {
  PETREL_ASSIGN_OR_RETURN(std::string base, BaseUrl(pod));
  PETREL_ASSIGN_OR_RETURN(std::string token, Token(pod));
  HttpCallOptions options;
  options.timeout = timeout;
  options.headers["Authorization"] = "Bearer " + token;
  options.headers["Content-Type"] = "application/json";
  return HttpCall("PUT", base + path, body.dump(), options);
}

Status HttpInstanceClient::PutSpec(const Json& pod, const InstanceSpec& spec) {
  PETREL_ASSIGN_OR_RETURN(HttpResponse r, AuthorizedPut(pod, "/spec", spec.ToJson(), timeout_));
  return FromHttp(r, "PUT /spec to " + meta::Name(pod));
}

Result<LeaseReply> HttpInstanceClient::PutLease(const Json& pod, const LeaseGrant& grant,
                                                Millis timeout) {
  PETREL_ASSIGN_OR_RETURN(HttpResponse r, AuthorizedPut(pod, "/lease", grant.ToJson(), timeout));
  std::string what = "PUT /lease to " + meta::Name(pod);
  if (r.status == 404) {
    return NotFoundError(what + ": this instance has no lease API (an older petrel instance?)");
  }
  PETREL_RETURN_IF_ERROR(FromHttp(r, what));
  Json body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return UnavailableError(what + ": the answer is not JSON");
  return LeaseReply::FromJson(body);
}

}  // namespace petrel
