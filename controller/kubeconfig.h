// Where the Kubernetes API is and how to authenticate to it: read from kubeconfig files (the
// same merge rules as kubectl) or from the in-cluster service-account mount. Pure loading, no
// network; the result feeds HttpKubeClient.
//
// The loaded KubeConfig holds credentials: never log it. Thread-safety: the functions are
// reentrant; a KubeConfig is a plain value.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace petrel {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubeConfig {
  std::string server;  // "https://127.0.0.1:6443" (http:// works too, without TLS)
  std::string ca_pem;  // PEM bundle to verify the server with; empty = the system's roots
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;  // name to check in the server certificate instead of the host

  // Credentials (secret: never logged). A bearer token, a token file re-read as it rotates,
  // or a client certificate and key (PEM).
  std::string token;
  std::string token_file;
  std::string client_cert_pem;
  std::string client_key_pem;

  std::string namespace_ = "default";  // the context's namespace
  std::string source;  // for messages: "context \"kind\" of /root/.kube/config" or "in-cluster"
};

// Loads a context from kubeconfig files merged like kubectl: the first file that defines a
// cluster, user, context or current-context wins; files that do not exist are skipped.
// `context` empty means current-context. Relative certificate and token paths are resolved
// against the directory of the file that names them; files they name are read now.
Result<KubeConfig> LoadKubeconfigFiles(const std::vector<std::string>& paths,
                                       const std::string& context = "");

// $KUBECONFIG (a colon-separated list) or, when unset, ~/.kube/config.
Result<KubeConfig> LoadKubeconfig(const std::string& context = "");

// The pod's service account: `root`/{token,ca.crt,namespace} and the API address from
// KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT.
Result<KubeConfig> LoadInClusterConfig(const std::string& root = kServiceAccountDir);

// What `petrel controller` uses: an explicit kubeconfig path if given, else in-cluster
// config when running in a pod, else LoadKubeconfig().
Result<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig_path = "",
                                     const std::string& context = "");

}  // namespace petrel
