// HttpKubeClient: KubeClient over HTTPS to a real kube-apiserver, for every resource type (core
// and custom, namespaced and cluster-scoped).
//
// - TLS (OpenSSL) verifies the server against the kubeconfig CA and the host name or IP, unless
//   insecure-skip-tls-verify; bearer token, token file or client certificate authentication.
// - A small bounded pool of keep-alive HTTP/1.1 connections; every call is bounded by
//   `request_timeout` in total, retries included.
// - Retries 429, 5xx and connection failures with capped exponential backoff and jitter,
//   honouring Retry-After, for a bounded number of attempts. A request that may have reached
//   the server is retried only when repeating it is safe (reads, PUT with resourceVersion,
//   DELETE, merge patch, apply); a POST or JSON patch is retried only when it surely did not
//   arrive (connect failure) or was refused with 429.
// - Kubernetes Status bodies become typed Status values (see KubeStatusFromResponse).
// - Tokens, keys and object payloads are never logged.
//
// This header is cheap to include: Beast, Asio and OpenSSL stay in the .cc.
// Thread-safety: all methods may be called from many threads at once. A WatchStream belongs to
// one thread, except Cancel().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "controller/kube_client.h"
#include "controller/kubeconfig.h"

namespace petrel {

struct HttpKubeClientOptions {
  // Bound of one call, retries and backoff included. Watch() uses it to open the stream only.
  std::chrono::milliseconds request_timeout{30000};
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
  int max_idle_connections = 8;
  std::string user_agent = "petrel";
};

// Called once per HTTP request sent (retries count separately): verb is get, list, watch,
// create, update, patch or delete; http_code is 0 when no response arrived.
using KubeRequestObserver =
    std::function<void(const std::string& verb, int http_code, double seconds)>;

class HttpKubeClient : public KubeClient {
 public:
  // Fails when the config is unusable (bad URL, unreadable PEM); does not contact the server.
  static Result<std::unique_ptr<HttpKubeClient>> Create(const KubeConfig& config,
                                                        const HttpKubeClientOptions& options = {});
  ~HttpKubeClient() override;

  // Replaces the metrics hook; may be called at any time.
  void SetObserver(KubeRequestObserver observer);
  // The namespace of the kubeconfig context (or the pod's), for callers that want a default.
  const std::string& default_namespace() const;
  // GET of a path outside the resource API ("/readyz", "/version", discovery); the body of a
  // 2xx answer, else the mapped error.
  Result<std::string> RawGet(const std::string& path);
  // GET of a path whose body arrives over time, like pods/NAME/log?follow=true: `on_data` gets
  // each piece as it arrives and returns false to stop reading. Opening is bounded by
  // request_timeout (with its retries); the body is read until the server ends it, `on_data`
  // stops, or `max_duration` passes (Timeout).
  Status RawGetStream(const std::string& path,
                      const std::function<bool(std::string_view data)>& on_data,
                      std::chrono::milliseconds max_duration);

  Result<Json> Get(const ResourceType& type, const ObjectKey& key) override;
  Result<ObjectList> List(const ResourceType& type, const std::string& namespace_,
                          const ListOptions& options) override;
  Result<Json> Create(const ResourceType& type, const Json& object) override;
  Result<Json> Update(const ResourceType& type, const Json& object,
                      Subresource sub = Subresource::kNone) override;
  Status Delete(const ResourceType& type, const ObjectKey& key,
                const DeleteOptions& options = {}) override;
  Result<Json> Patch(const ResourceType& type, const ObjectKey& key, PatchType patch_type,
                     const Json& patch, const PatchOptions& options = {}) override;
  Result<Json> CreateSubresource(const ResourceType& type, const ObjectKey& key,
                                 const std::string& subresource, const Json& body) override;
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& type,
                                             const std::string& namespace_,
                                             const WatchOptions& options) override;

 private:
  struct Impl;
  explicit HttpKubeClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Maps an API error response to a Status: 404 NotFound, 409 AlreadyExists or Conflict (by
// reason), 422/400 Invalid with details.causes, 410 Gone, 401 Unauthorized, 403 Forbidden,
// 429 TooManyRequests, 5xx Unavailable, other codes Terminal. The server's message is kept;
// `retry_after_header` (seconds) or details.retryAfterSeconds fills retry_after_ms.
Status KubeStatusFromResponse(int http_code, const std::string& body,
                              const std::string& retry_after_header = "");

// The API path of a resource: "/api/v1/namespaces/ns/pods/name/status" or
// "/apis/petrel.dev/v1alpha1/postgresclusters". Empty name: the collection; empty namespace:
// all namespaces (or a cluster-scoped type).
std::string KubeResourcePath(const ResourceType& type, const std::string& namespace_,
                             const std::string& name = "", const std::string& subresource = "");

}  // namespace petrel
