// KubeApi: a Kubernetes-compatible REST API over the LocalStore, served on `petrel local`'s
// loopback API server, so that HttpKubeClient (the plugin commands: `petrel status db`, ...)
// and kubectl work against petrel local unchanged, with the kubeconfig `petrel local up`
// writes into its state directory.
//
// A subset of kube-apiserver, for the resource types the store holds (LocalStoreServedType):
// - Discovery: /version, /api, /apis, /api/v1 and /apis/GROUP/VERSION (APIResourceList with
//   verbs, short names pgc/pga/po/svc/..., and the status and pods/log subresources).
// - Objects: GET (get; list with labelSelector, fieldSelector, limit, continue; watch=true
//   streams newline-delimited watch events, timeoutSeconds honoured), POST (create), PUT
//   (update), PATCH (merge, JSON and apply patches; strategic merge patch is refused with 415,
//   as kube-apiserver does for custom resources), DELETE (DeleteOptions body or the
//   gracePeriodSeconds / propagationPolicy query). The status subresource takes GET, PUT and
//   PATCH; POST reaches other subresources (pods/NAME/binding).
// - pods/NAME/log: the file <logs_dir>/<namespace>/<pod>.log the node agent writes (every
//   container of a local Pod shares it), with `container` checked against the Pod spec,
//   `tailLines`, `limitBytes` and `follow` (new lines are streamed until the client goes away,
//   the Pod is deleted or the server stops).
// - Not served: protobuf, server-side Table output (kubectl then prints its default columns),
//   dryRun, exec/attach/port-forward, RBAC (one bearer token is admin).
// Every request must prove it knows the token (401 otherwise): "Authorization: Bearer <token>"
// on /api/..., or the path prefix /t/<token>/ (a capability URL, because kubectl sends no
// credentials over plain HTTP; the kubeconfig holding it is 0600 like the token itself, and
// the server listens on 127.0.0.1 only). Errors are
// metav1.Status bodies with the usual codes and reasons, so KubeStatusFromResponse maps them
// back to the same Status codes the store returned.
//
// Thread-safety: handlers run concurrently on the HTTP server's threads; the store is
// thread-safe and KubeApi keeps no mutable state.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "controller/kube_client.h"
#include "net/http.h"

namespace petrel {

// The kubeconfig `petrel local up` writes into its state directory (mode 0600).
inline constexpr const char* kLocalKubeconfigFile = "kubeconfig";

// Where `petrel local` keeps its state without --state-dir: $XDG_STATE_HOME/petrel, else
// ~/.local/state/petrel.
std::filesystem::path DefaultLocalStateDir();

// A kubeconfig (YAML) with one cluster, user and context "petrel-local" (namespace default):
// `server` like "http://127.0.0.1:PORT" with the /t/<token> prefix, and `token` as the
// bearer token.
std::string LocalKubeconfigYaml(const std::string& server, const std::string& token);

struct KubeApiOptions {
  std::string token;               // the bearer token every request must carry (required)
  std::filesystem::path logs_dir;  // <state>/logs: <namespace>/<pod>.log
  // How often a followed log file is checked for new data.
  std::chrono::milliseconds log_poll_interval{200};
};

class KubeApi {
 public:
  KubeApi(KubeClient& store, KubeApiOptions options);

  // Routes /version, /api, /api/ and /apis, /apis/ of `server` here, and the same under
  // /t/<token>/. Before server.Start().
  // Kubernetes requests are served as (chunked) streams so that watches and followed logs
  // can use the same paths; such a connection is closed after its one response.
  void Register(HttpServer& server);

  // One request answered whole: everything except watch=true and follow=true, which answer
  // 400 here (Serve streams them).
  HttpResponse Handle(const HttpRequest& request);

  using StartResponse = std::function<ResponseStream&(int status, const std::string& type)>;
  // Any request: watches and followed logs stream, the rest is Handle() written at once.
  void Serve(const HttpRequest& request, const StartResponse& start);

 private:
  // Where a followed log continues.
  struct LogCursor {
    std::filesystem::path file;
    uint64_t offset = 0;
    std::string pod_uid;  // the follow ends when this Pod is gone
  };
  // The log of a Pod as the request asks (container, tailLines, limitBytes) into *content,
  // and where to continue into *cursor (may be null); false with *error set otherwise.
  bool ReadLog(const std::string& namespace_, const std::string& pod, const HttpRequest& r,
               std::string* content, LogCursor* cursor, HttpResponse* error);

  HttpResponse HandleUnchecked(const HttpRequest& request);
  void ServeUnchecked(const HttpRequest& request, const StartResponse& start);
  // The request with the /t/<token> prefix removed when it proves the token; nullopt if not.
  std::optional<HttpRequest> Authenticate(const HttpRequest& r) const;
  std::string TokenPrefix() const;

  KubeClient& store_;
  const KubeApiOptions options_;
};

}  // namespace petrel
