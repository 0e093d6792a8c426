#include "controller/kubeconfig.h"

#include "core/base64.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace petrel {
namespace {

namespace fs = std::filesystem;

// One named entry (cluster, user or context) and the file that defined it.
struct Entry {
  YAML::Node node;  // the inner "cluster:" / "user:" / "context:" map
  std::string file;
};

struct Merged {
  std::map<std::string, Entry> clusters, users, contexts;
  std::string current_context;
  std::vector<std::string> files;  // the files actually read

  std::string FileList() const {
    std::string s;
    for (const auto& f : files) s += (s.empty() ? "" : ", ") + f;
    return s;
  }
};

Result<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + what + " file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Scalar(const YAML::Node& map, const std::string& key) {
  if (!map || !map.IsMap()) return "";
  YAML::Node v = map[key];
  if (!v || !v.IsScalar()) return "";
  return v.as<std::string>();
}

// Paths in a kubeconfig are relative to the file that holds them.
std::string ResolvePath(const std::string& path, const std::string& file) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(file).parent_path() / path).lexically_normal().string();
}

Status MergeNamedList(const YAML::Node& doc, const std::string& list, const std::string& inner,
                      const std::string& file, std::map<std::string, Entry>* into) {
  YAML::Node items = doc[list];
  if (!items || items.IsNull()) return Status::Ok();
  if (!items.IsSequence()) return InvalidError(file + ": \"" + list + "\" must be a list");
  for (const auto& item : items) {
    std::string name = Scalar(item, "name");
    if (name.empty()) {
      return InvalidError(file + ": an entry of \"" + list + "\" has no name");
    }
    YAML::Node body = item[inner];
    if (!body || !body.IsMap()) {
      // A user may legitimately be empty ("user: {}"); anything else is a typo worth naming.
      if (inner == "user" && (!body || body.IsNull())) {
        body = YAML::Node(YAML::NodeType::Map);
      } else {
        return InvalidError(file + ": " + list + " entry \"" + name + "\" has no \"" + inner +
                            "\" map");
      }
    }
    into->emplace(name, Entry{body, file});  // emplace keeps the first definition
  }
  return Status::Ok();
}

Result<Merged> MergeFiles(const std::vector<std::string>& paths) {
  Merged merged;
  for (const auto& path : paths) {
    if (path.empty()) continue;
    std::error_code ec;
    if (!fs::exists(path, ec)) continue;  // kubectl skips missing files in $KUBECONFIG
    YAML::Node doc;
    try {
      doc = YAML::LoadFile(path);
    } catch (const YAML::Exception& e) {
      return InvalidError("kubeconfig " + path + " is not valid YAML: " + e.what());
    }
    merged.files.push_back(path);
    if (!doc || doc.IsNull()) continue;  // an empty file is allowed
    if (!doc.IsMap()) return InvalidError("kubeconfig " + path + " is not a YAML map");
    try {
      PETREL_RETURN_IF_ERROR(MergeNamedList(doc, "clusters", "cluster", path, &merged.clusters));
      PETREL_RETURN_IF_ERROR(MergeNamedList(doc, "users", "user", path, &merged.users));
      PETREL_RETURN_IF_ERROR(MergeNamedList(doc, "contexts", "context", path, &merged.contexts));
      if (merged.current_context.empty()) merged.current_context = Scalar(doc, "current-context");
    } catch (const YAML::Exception& e) {
      return InvalidError("kubeconfig " + path + ": " + e.what());
    }
  }
  if (merged.files.empty()) {
    std::string list;
    for (const auto& p : paths) list += (list.empty() ? "" : ", ") + p;
    return NotFoundError("no kubeconfig file found (looked for: " + list +
                         "); set KUBECONFIG or pass --kubeconfig");
  }
  return merged;
}

// "<x>-data" (base64 in the file) wins over "<x>" (a path), as in kubectl.
Result<std::string> DataOrFile(const Entry& entry, const std::string& key, const std::string& what,
                               const std::string& owner) {
  std::string data = Scalar(entry.node, key + "-data");
  if (!data.empty()) {
    std::optional<std::string> decoded = Base64Decode(data);
    if (!decoded) {
      return InvalidError(entry.file + ": " + owner + ": \"" + key + "-data\" is not valid base64");
    }
    return *decoded;
  }
  std::string path = Scalar(entry.node, key);
  if (path.empty()) return std::string();
  auto content = ReadFile(ResolvePath(path, entry.file), what);
  if (!content.ok()) return content.status().Annotate(entry.file + ": " + owner);
  return content;
}

}  // namespace


Result<KubeConfig> LoadKubeconfigFiles(const std::vector<std::string>& paths,
                                       const std::string& context) {
  PETREL_ASSIGN_OR_RETURN(Merged merged, MergeFiles(paths));
  const std::string files = merged.FileList();
  std::string context_name = context.empty() ? merged.current_context : context;
  if (context_name.empty()) {
    return InvalidError("kubeconfig " + files +
                        " sets no current-context; name a context or run `kubectl config "
                        "use-context NAME`");
  }
  auto ctx = merged.contexts.find(context_name);
  if (ctx == merged.contexts.end()) {
    std::string known;
    for (const auto& [name, e] : merged.contexts) known += (known.empty() ? "" : ", ") + name;
    return NotFoundError("context \"" + context_name + "\" not found in kubeconfig " + files +
                         (known.empty() ? " (it defines no contexts)" : " (known: " + known + ")"));
  }
  const Entry& c = ctx->second;
  KubeConfig config;
  config.source = "context \"" + context_name + "\" of " + c.file;
  std::string ns = Scalar(c.node, "namespace");
  if (!ns.empty()) config.namespace_ = ns;

  std::string cluster_name = Scalar(c.node, "cluster");
  if (cluster_name.empty()) {
    return InvalidError(c.file + ": context \"" + context_name + "\" names no cluster");
  }
  auto cl = merged.clusters.find(cluster_name);
  if (cl == merged.clusters.end()) {
    return NotFoundError("cluster \"" + cluster_name + "\" (of context \"" + context_name +
                         "\") is not defined in kubeconfig " + files);
  }
  const Entry& cluster = cl->second;
  const std::string cluster_owner = "cluster \"" + cluster_name + "\"";
  config.server = Scalar(cluster.node, "server");
  if (config.server.empty()) {
    return InvalidError(cluster.file + ": " + cluster_owner + " has no \"server\" address");
  }
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return InvalidError(cluster.file + ": " + cluster_owner + ": server \"" + config.server +
                        "\" must start with https:// or http://");
  }
  if (YAML::Node insecure = cluster.node["insecure-skip-tls-verify"]; insecure) {
    try {
      config.insecure_skip_tls_verify = insecure.as<bool>();
    } catch (const YAML::Exception&) {
      return InvalidError(cluster.file + ": " + cluster_owner +
                          ": insecure-skip-tls-verify must be true or false");
    }
  }
  config.tls_server_name = Scalar(cluster.node, "tls-server-name");
  PETREL_ASSIGN_OR_RETURN(config.ca_pem, DataOrFile(cluster, "certificate-authority",
                                                    "certificate-authority", cluster_owner));

  std::string user_name = Scalar(c.node, "user");
  if (user_name.empty()) return config;  // anonymous
  auto us = merged.users.find(user_name);
  if (us == merged.users.end()) {
    return NotFoundError("user \"" + user_name + "\" (of context \"" + context_name +
                         "\") is not defined in kubeconfig " + files);
  }
  const Entry& user = us->second;
  const std::string user_owner = "user \"" + user_name + "\"";
  if (user.node["exec"] || user.node["auth-provider"]) {
    return InvalidError(user.file + ": " + user_owner +
                        " uses an exec or auth-provider plugin, which Petrel does not run; use a "
                        "token, a token file or a client certificate");
  }
  config.token = Scalar(user.node, "token");
  std::string token_file = Scalar(user.node, "tokenFile");
  if (config.token.empty() && !token_file.empty()) {
    config.token_file = ResolvePath(token_file, user.file);
    auto token = ReadFile(config.token_file, "token");
    if (!token.ok()) return token.status().Annotate(user.file + ": " + user_owner);
    if (token->find_first_not_of(" \t\r\n") == std::string::npos) {
      return InvalidError(user.file + ": " + user_owner + ": token file " + config.token_file +
                          " is empty");
    }
  }
  PETREL_ASSIGN_OR_RETURN(config.client_cert_pem, DataOrFile(user, "client-certificate",
                                                             "client-certificate", user_owner));
  PETREL_ASSIGN_OR_RETURN(config.client_key_pem,
                          DataOrFile(user, "client-key", "client-key", user_owner));
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return InvalidError(user.file + ": " + user_owner +
                        (config.client_cert_pem.empty()
                             ? " has a client-key but no client-certificate"
                             : " has a client-certificate but no client-key"));
  }
  if (!Scalar(user.node, "username").empty() && config.token.empty() &&
      config.token_file.empty() && config.client_cert_pem.empty()) {
    return InvalidError(user.file + ": " + user_owner +
                        " uses basic auth (username/password), which kube-apiserver 1.19+ no "
                        "longer accepts; use a token or a client certificate");
  }
  return config;
}

Result<KubeConfig> LoadKubeconfig(const std::string& context) {
  std::vector<std::string> paths;
  const char* env = std::getenv("KUBECONFIG");
  if (env != nullptr && *env != '\0') {
    std::stringstream ss(env);
    std::string part;
    while (std::getline(ss, part, ':')) {
      if (!part.empty()) paths.push_back(part);
    }
  } else {
    const char* home = std::getenv("HOME");
    paths.push_back(std::string(home != nullptr ? home : "") + "/.kube/config");
  }
  return LoadKubeconfigFiles(paths, context);
}

Result<KubeConfig> LoadInClusterConfig(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return UnavailableError(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
        "are not set; pass --kubeconfig instead");
  }
  KubeConfig config;
  config.source = "in-cluster service account " + root;
  std::string h = host;
  config.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  config.token_file = root + "/token";
  auto token = ReadFile(config.token_file, "service-account token");
  if (!token.ok()) {
    return token.status().Annotate("in-cluster config (is automountServiceAccountToken off?)");
  }
  auto ca = ReadFile(root + "/ca.crt", "service-account CA");
  if (!ca.ok()) return ca.status().Annotate("in-cluster config");
  config.ca_pem = *ca;
  auto ns = ReadFile(root + "/namespace", "service-account namespace");
  if (ns.ok()) {
    std::string n = *ns;
    n.erase(n.find_last_not_of(" \t\r\n") + 1);
    if (!n.empty()) config.namespace_ = n;
  }
  return config;
}

Result<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig_path,
                                     const std::string& context) {
  if (!kubeconfig_path.empty()) return LoadKubeconfigFiles({kubeconfig_path}, context);
  const char* env = std::getenv("KUBECONFIG");
  if ((env == nullptr || *env == '\0') && std::getenv("KUBERNETES_SERVICE_HOST") != nullptr) {
    return LoadInClusterConfig();
  }
  return LoadKubeconfig(context);
}

}  // namespace petrel
