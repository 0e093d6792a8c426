#include "local/kube_api.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "local/manifests.h"
#include "local/store.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

// Kinds with a status subresource in Kubernetes (as the store implements it).
bool HasStatus(const ResourceType& type) {
  static const std::set<std::string> kinds = {
      "PostgresCluster", "PostgresAttachment", "Pod",           "PersistentVolumeClaim",
      "Service",         "Namespace",          "PodDisruptionBudget", "VolumeSnapshot",
      "CustomResourceDefinition"};
  return kinds.count(type.kind) > 0;
}

std::vector<std::string> ShortNames(const ResourceType& type) {
  static const std::map<std::string, std::vector<std::string>> names = {
      {"pods", {"po"}},
      {"persistentvolumeclaims", {"pvc"}},
      {"services", {"svc"}},
      {"endpoints", {"ep"}},
      {"configmaps", {"cm"}},
      {"namespaces", {"ns"}},
      {"events", {"ev"}},
      {"poddisruptionbudgets", {"pdb"}},
      {"customresourcedefinitions", {"crd", "crds"}},
      {"postgresclusters", {"pgc"}},
      {"postgresattachments", {"pga"}},
      {"volumesnapshots", {"vs"}}};
  auto it = names.find(type.resource);
  return it == names.end() ? std::vector<std::string>{} : it->second;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Json StatusBody(int code, const std::string& reason, const std::string& message,
                const std::vector<StatusCause>& causes = {}) {
  Json body = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
               {"status", "Failure"}, {"message", message}, {"reason", reason},
               {"code", code}};
  if (!causes.empty()) {
    Json list = Json::array();
    for (const auto& c : causes) {
      list.push_back({{"field", c.field}, {"reason", c.reason}, {"message", c.message}});
    }
    body["details"] = {{"causes", list}};
  }
  return body;
}

HttpResponse Error(int code, const std::string& reason, const std::string& message) {
  return HttpResponse::Json(code, StatusBody(code, reason, message).dump());
}

HttpResponse BadRequest(const std::string& message) { return Error(400, "BadRequest", message); }

// The HTTP code and reason kube-apiserver would answer for `status`; KubeStatusFromResponse
// maps them back to the same Code.
std::pair<int, std::string> HttpCodeOf(const Status& status) {
  switch (status.code()) {
    case Code::kNotFound: return {404, "NotFound"};
    case Code::kAlreadyExists: return {409, "AlreadyExists"};
    case Code::kConflict: return {409, "Conflict"};
    case Code::kInvalid: return {422, "Invalid"};
    case Code::kGone: return {410, "Expired"};
    case Code::kForbidden: return {403, "Forbidden"};
    case Code::kUnauthorized: return {401, "Unauthorized"};
    case Code::kTooManyRequests: return {429, "TooManyRequests"};
    case Code::kTimeout: return {504, "Timeout"};
    case Code::kUnavailable:
    case Code::kCancelled: return {503, "ServiceUnavailable"};
    case Code::kTerminal: return {400, "BadRequest"};
    case Code::kOk:
    case Code::kInternal: break;
  }
  return {500, "InternalError"};
}

HttpResponse ErrorFrom(const Status& status) {
  auto [code, reason] = HttpCodeOf(status);
  return HttpResponse::Json(code, StatusBody(code, reason, status.message(), status.causes()).dump());
}

HttpResponse Ok(int code, const Json& body) { return HttpResponse::Json(code, body.dump()); }

// A request path split into what it names.
struct ApiPath {
  std::string group;
  std::string version;
  const ResourceType* type = nullptr;  // null for a group-version discovery request
  std::string namespace_;
  std::string name;
  std::string subresource;
};

std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream in(path);
  std::string seg;
  while (std::getline(in, seg, '/')) {
    if (!seg.empty()) out.push_back(UrlDecode(seg));
  }
  return out;
}

Result<ApiPath> ParsePath(const std::string& path) {
  std::vector<std::string> s = Segments(path);
  ApiPath p;
  size_t rest;
  if (s.size() >= 2 && s[0] == "api") {
    p.version = s[1];
    rest = 2;
  } else if (s.size() >= 3 && s[0] == "apis") {
    p.group = s[1];
    p.version = s[2];
    rest = 3;
  } else {
    return NotFoundError("the server could not find the requested resource " + path);
  }
  std::vector<std::string> r(s.begin() + static_cast<std::ptrdiff_t>(rest), s.end());
  std::string resource;
  if (r.size() >= 3 && r[0] == "namespaces") {
    p.namespace_ = r[1];
    resource = r[2];
    if (r.size() > 3) p.name = r[3];
    if (r.size() > 4) p.subresource = r[4];
    if (r.size() > 5) return NotFoundError("the server could not find the requested resource " + path);
  } else if (!r.empty()) {
    resource = r[0];
    if (r.size() > 1) p.name = r[1];
    if (r.size() > 2) p.subresource = r[2];
    if (r.size() > 3) return NotFoundError("the server could not find the requested resource " + path);
  }
  bool known_version = false;
  for (const ResourceType* t : LocalStoreServedTypes()) {
    if (t->group != p.group || t->version != p.version) continue;
    known_version = true;
    if (t->resource == resource) p.type = t;
  }
  if (!known_version) {
    return NotFoundError("petrel local does not serve " +
                         (p.group.empty() ? p.version : p.group + "/" + p.version));
  }
  if (!resource.empty() && p.type == nullptr) {
    return NotFoundError("petrel local does not serve the resource \"" + resource + "\" in " +
                         (p.group.empty() ? p.version : p.group + "/" + p.version));
  }
  if (p.type != nullptr && !p.type->namespaced && !p.namespace_.empty()) {
    return NotFoundError(p.type->resource + " are not namespaced");
  }
  return p;
}

Json ApiResourceList(const std::string& group, const std::string& version) {
  Json list = Json::array();
  const Json verbs = {"create", "delete", "get", "list", "patch", "update", "watch"};
  for (const ResourceType* t : LocalStoreServedTypes()) {
    if (t->group != group || t->version != version) continue;
    Json r = {{"name", t->resource},
              {"singularName", Lower(t->kind)},
              {"namespaced", t->namespaced},
              {"kind", t->kind},
              {"verbs", verbs}};
    if (auto shorts = ShortNames(*t); !shorts.empty()) r["shortNames"] = shorts;
    list.push_back(r);
    if (HasStatus(*t)) {
      list.push_back({{"name", t->resource + "/status"},
                      {"singularName", ""},
                      {"namespaced", t->namespaced},
                      {"kind", t->kind},
                      {"verbs", {"get", "patch", "update"}}});
    }
    if (*t == resources::kPod) {
      list.push_back({{"name", "pods/log"},
                      {"singularName", ""},
                      {"namespaced", true},
                      {"kind", "Pod"},
                      {"verbs", {"get"}}});
      list.push_back({{"name", "pods/binding"},
                      {"singularName", ""},
                      {"namespaced", true},
                      {"kind", "Binding"},
                      {"verbs", {"create"}}});
    }
  }
  return {{"kind", "APIResourceList"},
          {"apiVersion", "v1"},
          {"groupVersion", group.empty() ? version : group + "/" + version},
          {"resources", list}};
}

Json ApiGroupList() {
  std::map<std::string, std::set<std::string>> groups;
  for (const ResourceType* t : LocalStoreServedTypes()) {
    if (!t->group.empty()) groups[t->group].insert(t->version);
  }
  Json list = Json::array();
  for (const auto& [group, versions] : groups) {
    Json vs = Json::array();
    for (const auto& v : versions) vs.push_back({{"groupVersion", group + "/" + v}, {"version", v}});
    list.push_back({{"name", group}, {"versions", vs}, {"preferredVersion", vs[0]}});
  }
  return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", list}};
}

Result<Json> ParseBody(const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_discarded()) return j;
  auto docs = ParseYamlDocuments(body);  // apply patches may be YAML
  if (docs.ok() && docs->size() == 1) return (*docs)[0];
  return InvalidError("the request body is neither JSON nor a single YAML document");
}

bool TrueParam(const HttpRequest& r, const std::string& name) {
  std::string v = r.QueryParam(name);
  return v == "true" || v == "1";
}

Result<int64_t> IntParam(const HttpRequest& r, const std::string& name, int64_t fallback) {
  if (!r.HasQueryParam(name)) return fallback;
  std::string v = r.QueryParam(name);
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || end == nullptr || *end != '\0' || n < 0) {
    return InvalidError("query parameter " + name + "=\"" + v + "\" is not a non-negative integer");
  }
  return static_cast<int64_t>(n);
}

std::string Authorization(const HttpRequest& r) {
  auto it = r.headers.find("authorization");
  return it == r.headers.end() ? "" : it->second;
}

// The last `lines` lines of `text` (all of it when lines < 0).
std::string TailLines(const std::string& text, int64_t lines) {
  if (lines < 0) return text;
  if (lines == 0) return "";
  size_t end = text.size();
  if (end > 0 && text[end - 1] == '\n') --end;  // the final newline ends the last line
  size_t pos = end;
  for (int64_t n = 0; n < lines; ++n) {
    size_t nl = pos == 0 ? std::string::npos : text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return text.substr(pos + 1);
}

Result<std::string> ReadFrom(const fs::path& file, uint64_t offset, uint64_t* new_offset) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + file.string());
  in.seekg(static_cast<std::streamoff>(offset));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  *new_offset = offset + data.size();
  return data;
}

}  // namespace

fs::path DefaultLocalStateDir() {
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && *xdg != '\0') {
    return fs::path(xdg) / "petrel";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr ? home : "/root") / ".local" / "state" / "petrel";
}

std::string LocalKubeconfigYaml(const std::string& server, const std::string& token) {
  // Built as JSON (which is YAML) so that no value needs YAML quoting rules. The server URL
  // carries the token as its path prefix too: kubectl sends no credentials over plain HTTP.
  Json config = {
      {"apiVersion", "v1"},
      {"kind", "Config"},
      {"clusters",
       {{{"name", "petrel-local"}, {"cluster", {{"server", server + "/t/" + token}}}}}},
      {"users", {{{"name", "petrel-local"}, {"user", {{"token", token}}}}}},
      {"contexts",
       {{{"name", "petrel-local"},
         {"context",
          {{"cluster", "petrel-local"}, {"user", "petrel-local"}, {"namespace", "default"}}}}}},
      {"current-context", "petrel-local"}};
  return config.dump(2) + "\n";
}

KubeApi::KubeApi(KubeClient& store, KubeApiOptions options)
    : store_(store), options_(std::move(options)) {}

std::string KubeApi::TokenPrefix() const { return "/t/" + options_.token; }

void KubeApi::Register(HttpServer& server) {
  auto whole = [this](const HttpRequest& r) { return Handle(r); };
  server.Handle("/version", whole);
  server.Handle("/api", whole);
  server.Handle("/apis", whole);
  auto stream = [this](const HttpRequest& r, const StartResponse& start) { Serve(r, start); };
  server.HandleStream("/api/", stream);
  server.HandleStream("/apis/", stream);
  if (!options_.token.empty()) server.HandleStream(TokenPrefix() + "/", stream);
}

std::optional<HttpRequest> KubeApi::Authenticate(const HttpRequest& r) const {
  if (options_.token.empty()) return std::nullopt;
  const std::string prefix = TokenPrefix() + "/";
  if (r.target.compare(0, prefix.size(), prefix) == 0) {
    HttpRequest inner = r;
    inner.target = r.target.substr(prefix.size() - 1);
    return inner;
  }
  if (Authorization(r) == "Bearer " + options_.token) return r;
  return std::nullopt;
}

HttpResponse KubeApi::Handle(const HttpRequest& request) {
  // A body of the wrong shape can make nlohmann::json throw; the server would log the path,
  // which may hold the token, so answer here.
  try {
    return HandleUnchecked(request);
  } catch (const std::exception& e) {
    return BadRequest(std::string("malformed request: ") + e.what());
  }
}

void KubeApi::Serve(const HttpRequest& request, const StartResponse& start) {
  try {
    ServeUnchecked(request, start);
  } catch (const std::exception& e) {
    // Before the stream starts this is the whole answer; after, it ends the stream.
    HttpResponse error = BadRequest(std::string("malformed request: ") + e.what());
    start(error.status, error.content_type).Write(error.body);
  }
}

HttpResponse KubeApi::HandleUnchecked(const HttpRequest& request) {
  std::optional<HttpRequest> authenticated = Authenticate(request);
  if (!authenticated) {
    return Error(401, "Unauthorized",
                 "Unauthorized: use the kubeconfig petrel local wrote into its state directory");
  }
  const HttpRequest& r = *authenticated;
  const std::string path = r.Path();
  if (path == "/version") {
    return Ok(200, {{"major", "1"},
                    {"minor", "20"},
                    {"gitVersion", "v1.20.0-petrel-local"},
                    {"platform", "linux/amd64"}});
  }
  if (path == "/api" || path == "/api/") {
    return Ok(200, {{"kind", "APIVersions"},
                    {"versions", {"v1"}},
                    {"serverAddressByClientCIDRs",
                     {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", "127.0.0.1"}}}}});
  }
  if (path == "/apis" || path == "/apis/") return Ok(200, ApiGroupList());

  auto parsed = ParsePath(path);
  if (!parsed.ok()) return ErrorFrom(parsed.status());
  const ApiPath& p = *parsed;
  if (p.type == nullptr) {
    if (r.method != "GET") return Error(405, "MethodNotAllowed", r.method + " is not allowed here");
    return Ok(200, ApiResourceList(p.group, p.version));
  }
  const ResourceType& type = *p.type;
  if (TrueParam(r, "watch") || TrueParam(r, "follow")) {
    return BadRequest("watch and follow requests are streamed; use KubeApi::Serve");
  }
  if (r.HasQueryParam("dryRun")) return BadRequest("petrel local does not support dryRun");
  ObjectKey key{p.namespace_, p.name};
  bool status_sub = p.subresource == "status";
  if (!p.subresource.empty() && !status_sub && !(r.method == "GET" && p.subresource == "log") &&
      r.method != "POST") {
    return Error(404, "NotFound",
                 "petrel local does not serve " + r.method + " on " + type.resource + "/" +
                     p.subresource);
  }
  if (status_sub && !HasStatus(type)) {
    return Error(404, "NotFound", type.resource + " have no status subresource");
  }

  if (r.method == "GET") {
    if (p.name.empty()) {
      ListOptions options;
      options.label_selector = r.QueryParam("labelSelector");
      options.field_selector = r.QueryParam("fieldSelector");
      options.continue_token = r.QueryParam("continue");
      auto limit = IntParam(r, "limit", 0);
      if (!limit.ok()) return BadRequest(limit.status().message());
      options.limit = *limit;
      auto list = store_.List(type, p.namespace_, options);
      if (!list.ok()) return ErrorFrom(list.status());
      Json meta_doc = {{"resourceVersion", list->resource_version}};
      if (!list->continue_token.empty()) meta_doc["continue"] = list->continue_token;
      return Ok(200, {{"apiVersion", type.ApiVersion()},
                      {"kind", type.kind + "List"},
                      {"metadata", meta_doc},
                      {"items", list->items}});
    }
    if (p.subresource == "log") {
      if (type != resources::kPod) return Error(404, "NotFound", "only pods have logs");
      std::string content;
      HttpResponse error;
      if (!ReadLog(p.namespace_, p.name, r, &content, nullptr, &error)) return error;
      HttpResponse ok = HttpResponse::Text(200, content);
      return ok;
    }
    auto got = store_.Get(type, key);
    return got.ok() ? Ok(200, *got) : ErrorFrom(got.status());
  }

  if (r.method == "DELETE") {
    if (p.name.empty()) return Error(405, "MethodNotAllowed", "deleting a collection is not supported");
    DeleteOptions options;
    Json body = r.body.empty() ? Json::object() : Json::parse(r.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return BadRequest("DeleteOptions are not JSON");
    std::string propagation = body.value("propagationPolicy", r.QueryParam("propagationPolicy"));
    if (propagation == "Background") options.propagation = PropagationPolicy::kBackground;
    if (propagation == "Foreground") options.propagation = PropagationPolicy::kForeground;
    if (propagation == "Orphan") options.propagation = PropagationPolicy::kOrphan;
    if (body.contains("gracePeriodSeconds") && body["gracePeriodSeconds"].is_number_integer()) {
      options.grace_period_seconds = body["gracePeriodSeconds"].get<int64_t>();
    } else if (r.HasQueryParam("gracePeriodSeconds")) {
      auto grace = IntParam(r, "gracePeriodSeconds", 0);
      if (!grace.ok()) return BadRequest(grace.status().message());
      options.grace_period_seconds = *grace;
    }
    if (body.contains("preconditions") && body["preconditions"].is_object()) {
      const Json& pre = body["preconditions"];
      if (pre.contains("uid") && pre["uid"].is_string()) options.precondition_uid = pre["uid"];
      if (pre.contains("resourceVersion") && pre["resourceVersion"].is_string()) {
        options.precondition_resource_version = pre["resourceVersion"];
      }
    }
    Status deleted = store_.Delete(type, key, options);
    if (!deleted.ok()) return ErrorFrom(deleted);
    return Ok(200, {{"kind", "Status"},
                    {"apiVersion", "v1"},
                    {"metadata", Json::object()},
                    {"status", "Success"},
                    {"details", {{"name", p.name}, {"kind", type.resource}}}});
  }

  auto body = ParseBody(r.body);
  if (!body.ok()) return BadRequest(body.status().message());

  if (r.method == "POST") {
    if (!p.subresource.empty()) {
      if (p.name.empty()) return BadRequest("a subresource needs an object name");
      auto created = store_.CreateSubresource(type, key, p.subresource, *body);
      return created.ok() ? Ok(201, *created) : ErrorFrom(created.status());
    }
    if (!p.name.empty()) return Error(405, "MethodNotAllowed", "POST goes to the collection");
    Json object = *body;
    if (!object.is_object()) return BadRequest("the object is not a JSON object");
    if (!object.contains("apiVersion")) object["apiVersion"] = type.ApiVersion();
    if (!object.contains("kind")) object["kind"] = type.kind;
    if (object["apiVersion"] != type.ApiVersion() || object["kind"] != type.kind) {
      return BadRequest("the object is a " + object.value("kind", "") + " (" +
                        object.value("apiVersion", "") + "), not a " + type.kind + " (" +
                        type.ApiVersion() + ")");
    }
    if (type.namespaced) {
      std::string ns = meta::Namespace(object);
      if (ns.empty()) {
        object["metadata"]["namespace"] = p.namespace_;
      } else if (!p.namespace_.empty() && ns != p.namespace_) {
        return BadRequest("the namespace of the provided object (" + ns +
                          ") does not match the namespace sent on the request (" + p.namespace_ +
                          ")");
      }
      if (meta::Namespace(object).empty()) return BadRequest("a namespace is required");
    }
    auto created = store_.Create(type, object);
    return created.ok() ? Ok(201, *created) : ErrorFrom(created.status());
  }

  if (p.name.empty()) return Error(405, "MethodNotAllowed", r.method + " needs an object name");

  if (r.method == "PUT") {
    Json object = *body;
    if (!object.is_object()) return BadRequest("the object is not a JSON object");
    if (meta::Name(object) != p.name) {
      return BadRequest("the name of the object (" + meta::Name(object) +
                        ") does not match the name on the URL (" + p.name + ")");
    }
    if (type.namespaced && meta::Namespace(object).empty()) {
      object["metadata"]["namespace"] = p.namespace_;
    }
    if (!object.contains("apiVersion")) object["apiVersion"] = type.ApiVersion();
    if (!object.contains("kind")) object["kind"] = type.kind;
    auto updated =
        store_.Update(type, object, status_sub ? Subresource::kStatus : Subresource::kNone);
    return updated.ok() ? Ok(200, *updated) : ErrorFrom(updated.status());
  }

  if (r.method == "PATCH") {
    auto ct = r.headers.find("content-type");
    std::string content_type = ct == r.headers.end() ? "" : ct->second;
    content_type = content_type.substr(0, content_type.find(';'));
    PatchType patch_type;
    if (content_type == "application/merge-patch+json") {
      patch_type = PatchType::kMerge;
    } else if (content_type == "application/json-patch+json") {
      patch_type = PatchType::kJson;
    } else if (content_type == "application/apply-patch+yaml") {
      patch_type = PatchType::kApply;
    } else {
      return Error(415, "UnsupportedMediaType",
                   "the patch content type \"" + content_type +
                       "\" is not supported: use merge (application/merge-patch+json), JSON "
                       "(application/json-patch+json) or apply (application/apply-patch+yaml) "
                       "patches, e.g. kubectl patch --type merge");
    }
    PatchOptions options;
    options.subresource = p.subresource;
    if (r.HasQueryParam("fieldManager")) options.field_manager = r.QueryParam("fieldManager");
    options.force = TrueParam(r, "force");
    auto patched = store_.Patch(type, key, patch_type, *body, options);
    return patched.ok() ? Ok(200, *patched) : ErrorFrom(patched.status());
  }
  return Error(405, "MethodNotAllowed", r.method + " is not supported");
}

bool KubeApi::ReadLog(const std::string& namespace_, const std::string& pod_name,
                      const HttpRequest& r, std::string* content, LogCursor* cursor,
                      HttpResponse* error) {
  auto pod = store_.Get(resources::kPod, {namespace_, pod_name});
  if (!pod.ok()) {
    *error = ErrorFrom(pod.status());
    return false;
  }
  std::vector<std::string> containers;
  if (pod->contains("/spec/containers"_json_pointer) && (*pod)["spec"]["containers"].is_array()) {
    for (const auto& c : (*pod)["spec"]["containers"]) containers.push_back(c.value("name", ""));
  }
  std::string container = r.QueryParam("container");
  std::string names;
  for (const auto& c : containers) names += (names.empty() ? "" : " ") + c;
  if (container.empty() && containers.size() > 1) {
    *error = BadRequest("a container name must be specified for pod " + pod_name +
                        ", choose one of: [" + names + "]");
    return false;
  }
  if (container.empty() && !containers.empty()) container = containers.front();
  if (std::find(containers.begin(), containers.end(), container) == containers.end()) {
    *error = BadRequest("container " + container + " is not valid for pod " + pod_name +
                        " (containers: " + names + ")");
    return false;
  }
  auto tail = IntParam(r, "tailLines", -1);
  auto limit = IntParam(r, "limitBytes", 0);
  if (!tail.ok() || !limit.ok()) {
    *error = BadRequest((tail.ok() ? limit.status() : tail.status()).message());
    return false;
  }
  fs::path file = options_.logs_dir / namespace_ / (pod_name + ".log");
  uint64_t end = 0;
  auto text = ReadFrom(file, 0, &end);
  if (!text.ok()) {
    *error = BadRequest("container \"" + container + "\" in pod \"" + pod_name +
                        "\" is waiting to start: it has written no log yet");
    return false;
  }
  *content = TailLines(*text, *tail);
  if (*limit > 0 && content->size() > static_cast<uint64_t>(*limit)) content->resize(*limit);
  if (cursor != nullptr) {
    cursor->file = file;
    cursor->offset = end;
    cursor->pod_uid = meta::Uid(*pod);
  }
  return true;
}

void KubeApi::ServeUnchecked(const HttpRequest& request, const StartResponse& start) {
  auto answer = [&start](const HttpResponse& response) {
    ResponseStream& out = start(response.status, response.content_type);
    out.Write(response.body);
  };
  bool watch = request.method == "GET" && TrueParam(request, "watch");
  bool follow = request.method == "GET" && TrueParam(request, "follow");
  if (!watch && !follow) return answer(Handle(request));
  std::optional<HttpRequest> authenticated = Authenticate(request);
  if (!authenticated) return answer(Handle(request));  // the 401
  const HttpRequest& r = *authenticated;
  auto parsed = ParsePath(r.Path());
  if (!parsed.ok()) return answer(ErrorFrom(parsed.status()));
  const ApiPath& p = *parsed;
  if (p.type == nullptr) return answer(BadRequest("watch needs a resource"));

  if (follow) {
    if (*p.type != resources::kPod || p.subresource != "log" || p.name.empty()) {
      return answer(BadRequest("follow=true is only for pods/NAME/log"));
    }
    std::string content;
    LogCursor cursor;
    HttpResponse error;
    if (!ReadLog(p.namespace_, p.name, r, &content, &cursor, &error)) return answer(error);
    ResponseStream& out = start(200, "text/plain; charset=utf-8");
    if (!out.Write(content)) return;
    auto last_pod_check = std::chrono::steady_clock::now();
    while (!out.Closed()) {
      std::this_thread::sleep_for(options_.log_poll_interval);
      std::error_code ec;
      uint64_t size = fs::file_size(cursor.file, ec);
      if (!ec && size < cursor.offset) cursor.offset = 0;  // truncated: start over
      if (!ec && size > cursor.offset) {
        auto data = ReadFrom(cursor.file, cursor.offset, &cursor.offset);
        if (data.ok() && !out.Write(*data)) return;
      }
      if (std::chrono::steady_clock::now() - last_pod_check > std::chrono::seconds(1)) {
        last_pod_check = std::chrono::steady_clock::now();
        auto pod = store_.Get(resources::kPod, {p.namespace_, p.name});
        if (!pod.ok() || meta::Uid(*pod) != cursor.pod_uid) return;  // the Pod is gone
      }
    }
    return;
  }

  if (!p.name.empty()) return answer(BadRequest("watch goes to a collection, not an object"));
  WatchOptions options;
  options.resource_version = r.QueryParam("resourceVersion");
  options.label_selector = r.QueryParam("labelSelector");
  options.field_selector = r.QueryParam("fieldSelector");
  auto timeout = IntParam(r, "timeoutSeconds", 0);
  if (!timeout.ok()) return answer(BadRequest(timeout.status().message()));
  options.timeout_seconds = static_cast<int>(*timeout);
  auto stream = store_.Watch(*p.type, p.namespace_, options);
  if (!stream.ok()) return answer(ErrorFrom(stream.status()));
  ResponseStream& out = start(200, "application/json");
  while (!out.Closed()) {
    WatchEvent event;
    Status st = (*stream)->Next(&event, std::chrono::seconds(1));
    if (st.code() == Code::kTimeout) continue;
    if (st.code() == Code::kGone) {
      out.Write(Json{{"type", "ERROR"}, {"object", StatusBody(410, "Expired", st.message())}}
                    .dump() +
                "\n");
      break;
    }
    if (!st.ok()) break;  // the store's timeout or shutdown ends the watch
    const char* type = "ERROR";
    switch (event.type) {
      case WatchEventType::kAdded: type = "ADDED"; break;
      case WatchEventType::kModified: type = "MODIFIED"; break;
      case WatchEventType::kDeleted: type = "DELETED"; break;
      case WatchEventType::kBookmark: type = "BOOKMARK"; break;
      case WatchEventType::kError: type = "ERROR"; break;
    }
    if (!out.Write(Json{{"type", type}, {"object", event.object}}.dump() + "\n")) break;
  }
  (*stream)->Cancel();
}

}  // namespace petrel
