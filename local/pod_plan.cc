#include "local/pod_plan.h"

#include <algorithm>

namespace petrel {
namespace {

bool IsDelimiter(char c) {
  return c == ' ' || c == '=' || c == ':' || c == ',' || c == ';' || c == '\'' || c == '"';
}

std::string Str(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The value of metadata.labels['k'] style references.
std::string MapRef(const Json& pod, const std::string& path, const char* field) {
  std::string prefix = std::string("metadata.") + field + "['";
  if (path.rfind(prefix, 0) != 0 || path.size() < prefix.size() + 2 ||
      path.substr(path.size() - 2) != "']") {
    return {};
  }
  std::string key = path.substr(prefix.size(), path.size() - prefix.size() - 2);
  return field == std::string("labels") ? meta::Label(pod, key) : meta::Annotation(pod, key);
}

Result<std::string> FieldRef(const Json& pod, const PodEnvironment& env, const std::string& path,
                             const std::string& where) {
  if (path == "metadata.name") return meta::Name(pod);
  if (path == "metadata.namespace") return meta::Namespace(pod);
  if (path == "metadata.uid") return meta::Uid(pod);
  if (path == "spec.nodeName") return pod.value("spec", Json::object()).value("nodeName", "");
  if (path == "status.podIP") return env.pod_ip;
  if (path == "status.hostIP") return env.host_ip;
  if (path.rfind("metadata.labels['", 0) == 0) return MapRef(pod, path, "labels");
  if (path.rfind("metadata.annotations['", 0) == 0) return MapRef(pod, path, "annotations");
  return InvalidError(where + ".valueFrom.fieldRef.fieldPath \"" + path +
                      "\" is not supported by the local node agent");
}

Result<uint16_t> ResolvePort(const Json& port, const Json& container, const std::string& where) {
  if (port.is_number_integer()) {
    int64_t p = port.get<int64_t>();
    if (p > 0 && p < 65536) return static_cast<uint16_t>(p);
  } else if (port.is_string()) {
    for (const Json& cp : container.value("ports", Json::array())) {
      if (Str(cp, "name") == port.get<std::string>() && cp.contains("containerPort")) {
        return static_cast<uint16_t>(cp["containerPort"].get<int>());
      }
    }
  }
  return InvalidError(where + ": port " + port.dump() +
                      " is neither a port number nor a named containerPort");
}

Result<ProbePlan> PlanProbe(const Json& probe, const Json& container, const PodEnvironment& env,
                            const std::string& where) {
  ProbePlan plan;
  if (!probe.is_object()) return plan;
  plan.initial_delay = std::chrono::seconds(probe.value("initialDelaySeconds", 0));
  plan.period = std::chrono::seconds(std::max(1, probe.value("periodSeconds", 10)));
  plan.timeout = std::chrono::seconds(std::max(1, probe.value("timeoutSeconds", 1)));
  plan.failure_threshold = std::max(1, probe.value("failureThreshold", 3));
  plan.success_threshold = std::max(1, probe.value("successThreshold", 1));
  plan.host = env.pod_ip;
  if (probe.contains("httpGet")) {
    const Json& get = probe["httpGet"];
    if (Str(get, "scheme") == "HTTPS") {
      return InvalidError(where + ".httpGet: HTTPS probes are not supported locally");
    }
    plan.kind = ProbePlan::Kind::kHttpGet;
    if (!Str(get, "host").empty()) plan.host = Str(get, "host");
    plan.path = Str(get, "path").empty() ? "/" : Str(get, "path");
    PETREL_ASSIGN_OR_RETURN(plan.port, ResolvePort(get.value("port", Json()), container,
                                                   where + ".httpGet"));
  } else if (probe.contains("tcpSocket")) {
    const Json& tcp = probe["tcpSocket"];
    plan.kind = ProbePlan::Kind::kTcpSocket;
    if (!Str(tcp, "host").empty()) plan.host = Str(tcp, "host");
    PETREL_ASSIGN_OR_RETURN(plan.port, ResolvePort(tcp.value("port", Json()), container,
                                                   where + ".tcpSocket"));
  } else {
    return InvalidError(where + ": only httpGet and tcpSocket probes are supported locally");
  }
  return plan;
}

Result<ContainerPlan> PlanContainer(const Json& pod, const Json& container,
                                    const PodEnvironment& env, const std::string& where) {
  ContainerPlan plan;
  plan.name = Str(container, "name");
  plan.image = Str(container, "image");
  std::vector<std::string> command, args;
  for (const Json& c : container.value("command", Json::array())) {
    if (c.is_string()) command.push_back(c.get<std::string>());
  }
  for (const Json& a : container.value("args", Json::array())) {
    if (a.is_string()) args.push_back(a.get<std::string>());
  }
  if (command.empty()) {
    return InvalidError(where + " has no command: container images cannot run under the local "
                        "node agent, so every container needs an explicit command");
  }

  // Mounts: mountPath -> host directory, longest first.
  std::vector<std::pair<std::string, std::string>> mounts;
  for (const Json& m : container.value("volumeMounts", Json::array())) {
    std::string volume = Str(m, "name");
    auto dir = env.volume_dirs.find(volume);
    if (dir == env.volume_dirs.end()) {
      return InvalidError(where + ".volumeMounts: volume \"" + volume +
                          "\" is not a volume of this pod (or of a kind the local agent cannot "
                          "provide)");
    }
    std::string host = dir->second;
    std::string sub = Str(m, "subPath");
    if (!sub.empty()) host += "/" + sub;
    std::string path = Str(m, "mountPath");
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    mounts.emplace_back(path, host);
  }

  // Environment, in order; $(VAR) sees the variables defined before it.
  std::map<std::string, std::string> vars;
  auto set = [&](const std::string& k, const std::string& v) {
    plan.env.emplace_back(k, v);
    vars[k] = v;
  };
  for (const auto& [k, v] : env.base_env) set(k, v);
  set("HOSTNAME", meta::Name(pod));
  for (const Json& from : container.value("envFrom", Json::array())) {
    std::string prefix = Str(from, "prefix");
    bool is_secret = from.contains("secretRef");
    const Json& ref = is_secret ? from["secretRef"] : from.value("configMapRef", Json::object());
    std::string name = Str(ref, "name");
    auto data = is_secret ? env.secret_data(name) : env.config_map_data(name);
    if (!data.ok()) {
      if (data.status().code() == Code::kNotFound && ref.value("optional", false)) continue;
      return data.status().Annotate(where + ".envFrom");
    }
    for (const auto& [k, v] : *data) set(prefix + k, RewriteMountPaths(v, mounts));
  }
  for (const Json& e : container.value("env", Json::array())) {
    std::string name = Str(e, "name");
    std::string field = where + ".env[" + name + "]";
    if (e.contains("valueFrom")) {
      const Json& from = e["valueFrom"];
      Result<std::string> value = std::string();
      if (from.contains("secretKeyRef") || from.contains("configMapKeyRef")) {
        bool is_secret = from.contains("secretKeyRef");
        const Json& ref = is_secret ? from["secretKeyRef"] : from["configMapKeyRef"];
        value = is_secret ? env.secret_value(Str(ref, "name"), Str(ref, "key"))
                          : env.config_map_value(Str(ref, "name"), Str(ref, "key"));
        if (!value.ok() && value.status().code() == Code::kNotFound &&
            ref.value("optional", false)) {
          continue;
        }
      } else if (from.contains("fieldRef")) {
        value = FieldRef(pod, env, Str(from["fieldRef"], "fieldPath"), field);
      } else {
        return InvalidError(field + ".valueFrom: only secretKeyRef, configMapKeyRef and fieldRef "
                            "are supported locally");
      }
      if (!value.ok()) return value.status().Annotate(field);
      set(name, RewriteMountPaths(*value, mounts));
    } else {
      set(name, RewriteMountPaths(ExpandEnvReferences(Str(e, "value"), vars), mounts));
    }
  }

  for (auto& part : command) part = RewriteMountPaths(ExpandEnvReferences(part, vars), mounts);
  for (auto& part : args) part = RewriteMountPaths(ExpandEnvReferences(part, vars), mounts);
  const std::string& program = command[0];
  if (program == "petrel" ||
      (program.size() > 7 && program.compare(program.size() - 7, 7, "/petrel") == 0)) {
    command[0] = env.petrel_binary;
  }
  plan.argv = std::move(command);
  plan.argv.insert(plan.argv.end(), args.begin(), args.end());
  plan.working_dir = RewriteMountPaths(Str(container, "workingDir"), mounts);
  PETREL_ASSIGN_OR_RETURN(plan.readiness,
                          PlanProbe(container.value("readinessProbe", Json()), container, env,
                                    where + ".readinessProbe"));
  PETREL_ASSIGN_OR_RETURN(plan.liveness,
                          PlanProbe(container.value("livenessProbe", Json()), container, env,
                                    where + ".livenessProbe"));
  return plan;
}

}  // namespace

std::string RewriteMountPaths(const std::string& text,
                              const std::vector<std::pair<std::string, std::string>>& mounts) {
  if (mounts.empty() || text.empty()) return text;
  std::vector<std::pair<std::string, std::string>> sorted = mounts;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    bool at_boundary = i == 0 || IsDelimiter(text[i - 1]);
    bool replaced = false;
    if (at_boundary && text[i] == '/') {
      for (const auto& [mount, host] : sorted) {
        if (mount.empty() || text.compare(i, mount.size(), mount) != 0) continue;
        size_t end = i + mount.size();
        bool whole = end == text.size() || text[end] == '/' || IsDelimiter(text[end]) ||
                     mount == "/";
        if (!whole) continue;
        out += host;
        i = end;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

std::string ExpandEnvReferences(const std::string& text,
                                const std::map<std::string, std::string>& vars) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {  // $$ -> $
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] == '(') {
      size_t close = text.find(')', i + 2);
      if (close != std::string::npos) {
        auto it = vars.find(text.substr(i + 2, close - i - 2));
        if (it != vars.end()) {
          out += it->second;
          i = close;
          continue;
        }
      }
    }
    out += text[i];
  }
  return out;
}

Result<PodPlan> PlanPod(const Json& pod, const PodEnvironment& env) {
  PodPlan plan;
  const Json spec = pod.value("spec", Json::object());
  std::string policy = Str(spec, "restartPolicy");
  if (policy == "OnFailure") {
    plan.restart_policy = RestartPolicy::kOnFailure;
  } else if (policy == "Never") {
    plan.restart_policy = RestartPolicy::kNever;
  }
  plan.grace_period = std::chrono::seconds(spec.value("terminationGracePeriodSeconds", 30));
  int i = 0;
  for (const Json& c : spec.value("initContainers", Json::array())) {
    PETREL_ASSIGN_OR_RETURN(
        ContainerPlan cp,
        PlanContainer(pod, c, env, "spec.initContainers[" + std::to_string(i++) + "]"));
    plan.init_containers.push_back(std::move(cp));
  }
  i = 0;
  for (const Json& c : spec.value("containers", Json::array())) {
    PETREL_ASSIGN_OR_RETURN(
        ContainerPlan cp,
        PlanContainer(pod, c, env, "spec.containers[" + std::to_string(i++) + "]"));
    plan.containers.push_back(std::move(cp));
  }
  if (plan.containers.empty()) return InvalidError("spec.containers is empty");
  return plan;
}

}  // namespace petrel
