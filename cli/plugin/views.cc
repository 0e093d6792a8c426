#include "cli/plugin/views.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <limits>
#include <regex>
#include <set>

#include "api/attachment.h"
#include "api/cluster.h"

namespace petrel::plugin {
namespace {

std::string Str(const Json& obj, const Json::json_pointer& ptr, const std::string& fallback = "") {
  if (!obj.contains(ptr)) return fallback;
  const Json& v = obj.at(ptr);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return fallback;
}

int64_t Int(const Json& obj, const Json::json_pointer& ptr, int64_t fallback = 0) {
  if (!obj.contains(ptr) || !obj.at(ptr).is_number_integer()) return fallback;
  return obj.at(ptr).get<int64_t>();
}

std::string Dash(const std::string& s) { return s.empty() ? "-" : s; }

std::string CellOf(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return Dash(v.get<std::string>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return buf;
}

std::string ClusterDatabaseOwner(const Json& cluster, std::string* database) {
  *database = Str(cluster, "/spec/bootstrap/initdb/database"_json_pointer, "app");
  return Str(cluster, "/spec/bootstrap/initdb/owner"_json_pointer, *database);
}

std::string AttachmentRef(const Json& summary) {
  return summary["namespace"].get<std::string>() + "/" + summary["name"].get<std::string>();
}

// status.instances[].checks as [{name, status, output}], or null when the instance reports
// none. Tolerant: "state" is accepted for "status", unknown values are kept as they are.
Json InstanceChecks(const Json& instance) {
  if (!instance.contains("checks") || !instance["checks"].is_array()) return nullptr;
  Json checks = Json::array();
  for (const auto& c : instance["checks"]) {
    if (!c.is_object()) continue;
    checks.push_back({{"name", Str(c, "/name"_json_pointer)},
                      {"status", Str(c, "/status"_json_pointer, Str(c, "/state"_json_pointer))},
                      {"output", Str(c, "/output"_json_pointer)}});
  }
  return checks;
}

// "0/3000060" as a number; nullopt when it is not an LSN.
std::optional<uint64_t> ParseLsn(const std::string& text) {
  static const std::regex kLsn(R"(^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$)");
  std::smatch m;
  if (!std::regex_match(text, m, kLsn)) return std::nullopt;
  return (std::stoull(m[1].str(), nullptr, 16) << 32) | std::stoull(m[2].str(), nullptr, 16);
}

const Json* FindInstance(const Json& cluster, const std::string& name) {
  if (!cluster.contains("/status/instances"_json_pointer) ||
      !cluster["status"]["instances"].is_array()) {
    return nullptr;
  }
  for (const auto& inst : cluster["status"]["instances"]) {
    if (inst.is_object() && Str(inst, "/name"_json_pointer) == name) return &inst;
  }
  return nullptr;
}

std::string MemberList(const Json& cluster) {
  std::string names;
  if (cluster.contains("/status/instances"_json_pointer) &&
      cluster["status"]["instances"].is_array()) {
    for (const auto& inst : cluster["status"]["instances"]) {
      names += (names.empty() ? "" : ", ") + Str(inst, "/name"_json_pointer);
    }
  }
  return names.empty() ? "none reported yet" : names;
}

}  // namespace

std::string ClusterNotFoundMessage(const std::string& name, const std::string& namespace_,
                                   const std::string& cli) {
  return "no PostgresCluster \"" + name + "\" in namespace \"" + namespace_ +
         "\"; list them with: " + cli + " list -n " + namespace_;
}

// ---- list ----------------------------------------------------------------------------------

Json ClusterSummary(const Json& cluster) {
  Json s = Json::object();
  s["namespace"] = meta::Namespace(cluster);
  s["name"] = meta::Name(cluster);
  s["replicas"] = Int(cluster, "/spec/replicas"_json_pointer, 1);
  s["ready"] = Int(cluster, "/status/readyReplicas"_json_pointer, 0);
  s["primary"] = Str(cluster, "/status/currentPrimary"_json_pointer);
  s["image"] = Str(cluster, "/status/image"_json_pointer, Str(cluster, "/spec/image"_json_pointer));
  int64_t version = Int(cluster, "/status/postgresMajorVersion"_json_pointer,
                        Int(cluster, "/spec/postgresVersion"_json_pointer, 0));
  s["version"] = version == 0 ? Json(nullptr) : Json(version);
  s["phase"] = Str(cluster, "/status/phase"_json_pointer, "Pending");
  s["phaseReason"] = Str(cluster, "/status/phaseReason"_json_pointer);
  return s;
}

Table ClusterListTable(const Json& summaries, bool with_namespace) {
  Table t;
  if (with_namespace) t.headers.push_back("NAMESPACE");
  for (const char* h : {"NAME", "REPLICAS", "READY", "PRIMARY", "VERSION", "PHASE"}) {
    t.headers.push_back(h);
  }
  for (const auto& s : summaries) {
    std::vector<std::string> row;
    if (with_namespace) row.push_back(s["namespace"].get<std::string>());
    row.push_back(s["name"].get<std::string>());
    row.push_back(CellOf(s["replicas"]));
    row.push_back(CellOf(s["ready"]));
    row.push_back(CellOf(s["primary"]));
    row.push_back(CellOf(s["version"]));
    row.push_back(CellOf(s["phase"]));
    t.rows.push_back(std::move(row));
  }
  return t;
}

// ---- status --------------------------------------------------------------------------------

bool AttachmentReferences(const Json& attachment, const ObjectKey& cluster) {
  std::string name = Str(attachment, "/spec/clusterRef/name"_json_pointer);
  std::string ns =
      Str(attachment, "/spec/clusterRef/namespace"_json_pointer, meta::Namespace(attachment));
  return name == cluster.name && ns == cluster.namespace_;
}

Json AttachmentSummary(const Json& attachment) {
  Json s = Json::object();
  s["namespace"] = meta::Namespace(attachment);
  s["name"] = meta::Name(attachment);
  auto spec = ParseAttachment(attachment);
  if (spec.ok()) {
    s["database"] = spec->database_name;
    s["role"] = spec->role_name;
    s["privileges"] = PrivilegesName(spec->privileges);
    s["secret"] = spec->secret_name;
  } else {
    // An invalid spec still shows up, with what status says (the controller refused it).
    s["database"] = Str(attachment, "/status/databaseName"_json_pointer);
    s["role"] = Str(attachment, "/status/roleName"_json_pointer);
    s["privileges"] = Str(attachment, "/spec/privileges"_json_pointer);
    s["secret"] = Str(attachment, "/status/secretName"_json_pointer);
  }
  s["phase"] = Str(attachment, "/status/phase"_json_pointer, spec.ok() ? "Pending" : "Invalid");
  return s;
}

Json StatusReport(const ClusterObjects& objects) {
  const Json& c = objects.cluster;
  Json report = Json::object();
  Json summary = ClusterSummary(c);
  summary["statusReplicas"] = Int(c, "/status/replicas"_json_pointer, 0);
  summary["targetPrimary"] = Str(c, "/status/targetPrimary"_json_pointer);
  summary["observedGeneration"] = Int(c, "/status/observedGeneration"_json_pointer, 0);
  summary["generation"] = meta::Generation(c);
  report["cluster"] = summary;

  Json conditions = Json::array();
  if (c.contains("/status/conditions"_json_pointer) && c["status"]["conditions"].is_array()) {
    for (const auto& cond : c["status"]["conditions"]) {
      conditions.push_back({{"type", Str(cond, "/type"_json_pointer)},
                            {"status", Str(cond, "/status"_json_pointer)},
                            {"reason", Str(cond, "/reason"_json_pointer)},
                            {"message", Str(cond, "/message"_json_pointer)},
                            {"lastTransitionTime", Str(cond, "/lastTransitionTime"_json_pointer)}});
    }
  }
  report["conditions"] = conditions;

  Json instances = Json::array();
  if (c.contains("/status/instances"_json_pointer) && c["status"]["instances"].is_array()) {
    for (const auto& inst : c["status"]["instances"]) {
      Json lag = inst.contains("lagBytes") && inst["lagBytes"].is_number_integer() &&
                         inst["lagBytes"].get<int64_t>() >= 0
                     ? inst["lagBytes"]
                     : Json(nullptr);
      instances.push_back({{"name", Str(inst, "/name"_json_pointer)},
                           {"role", Str(inst, "/role"_json_pointer)},
                           {"ready", inst.value("ready", false)},
                           {"phase", Str(inst, "/phase"_json_pointer)},
                           {"lsn", Str(inst, "/lsn"_json_pointer)},
                           {"lagBytes", lag},
                           {"timeline", Int(inst, "/timeline"_json_pointer, 0)},
                           {"message", Str(inst, "/message"_json_pointer)},
                           {"checks", InstanceChecks(inst)}});
    }
  }
  report["instances"] = instances;

  Json services = Json::array();
  for (const auto& svc : objects.services) {
    std::string name = meta::Name(svc);
    Json ports = Json::array();
    if (svc.contains("/spec/ports"_json_pointer)) {
      for (const auto& p : svc["spec"]["ports"]) ports.push_back(p.value("port", 0));
    }
    Json ready = Json::array();
    Json not_ready = Json::array();
    for (const auto& ep : objects.endpoints) {
      if (meta::Name(ep) != name || !ep.contains("subsets")) continue;
      for (const auto& subset : ep["subsets"]) {
        auto collect = [&subset](const char* key, Json* into) {
          if (!subset.contains(key)) return;
          for (const auto& a : subset[key]) {
            std::string target = Str(a, "/targetRef/name"_json_pointer);
            std::string ip = Str(a, "/ip"_json_pointer);
            into->push_back(target.empty() ? ip : target + " (" + ip + ")");
          }
        };
        collect("addresses", &ready);
        collect("notReadyAddresses", &not_ready);
      }
    }
    std::string local = meta::Annotation(svc, "petrel.dev/local-address");
    services.push_back({{"name", name},
                        {"type", Str(svc, "/spec/type"_json_pointer, "ClusterIP")},
                        {"clusterIP", Str(svc, "/spec/clusterIP"_json_pointer)},
                        {"localAddress", local},
                        {"ports", ports},
                        {"endpoints", ready},
                        {"notReadyEndpoints", not_ready}});
  }
  report["services"] = services;

  Json attachments = Json::array();
  for (const auto& a : objects.attachments) attachments.push_back(AttachmentSummary(a));
  report["attachments"] = attachments;
  if (!objects.attachments_scope_note.empty()) {
    report["attachmentsNote"] = objects.attachments_scope_note;
  }
  return report;
}

std::string RenderStatusText(const Json& report) {
  const Json& c = report["cluster"];
  std::string out;
  auto line = [&out](const std::string& key, const std::string& value) {
    out += key;
    out.append(key.size() < 10 ? 10 - key.size() : 1, ' ');
    out += value + "\n";
  };
  line("Cluster:", c["namespace"].get<std::string>() + "/" + c["name"].get<std::string>());
  std::string phase = c["phase"];
  if (!c["phaseReason"].get<std::string>().empty())
    phase += " (" + c["phaseReason"].get<std::string>() + ")";
  line("Phase:", phase);
  line("Replicas:", CellOf(c["ready"]) + "/" + CellOf(c["replicas"]) + " ready (" +
                        CellOf(c["statusReplicas"]) + " exist)");
  std::string primary = CellOf(c["primary"]);
  if (!c["targetPrimary"].get<std::string>().empty() && c["targetPrimary"] != c["primary"]) {
    primary += " (switching over to " + c["targetPrimary"].get<std::string>() + ")";
  }
  line("Primary:", primary);
  std::string image = CellOf(c["image"]);
  if (!c["version"].is_null()) image += " (PostgreSQL " + CellOf(c["version"]) + ")";
  line("Image:", image);
  if (c["observedGeneration"].get<int64_t>() < c["generation"].get<int64_t>()) {
    line("Note:", "status describes generation " + CellOf(c["observedGeneration"]) +
                      "; the spec is at generation " + CellOf(c["generation"]) +
                      " (the controller has not caught up yet)");
  }

  auto section = [&out](const std::string& title, const Table& table, const char* empty) {
    out += "\n" + title + "\n";
    out += table.rows.empty() ? std::string(empty) + "\n" : RenderTable(table);
  };

  Table conds{{"TYPE", "STATUS", "REASON", "MESSAGE"}, {}};
  for (const auto& cond : report["conditions"]) {
    conds.rows.push_back({CellOf(cond["type"]), CellOf(cond["status"]), CellOf(cond["reason"]),
                          CellOf(cond["message"])});
  }
  section("Conditions:", conds, "  (none reported yet)");

  Table insts{{"NAME", "ROLE", "READY", "PHASE", "LAG", "TIMELINE", "CHECKS", "MESSAGE"}, {}};
  for (const auto& i : report["instances"]) {
    insts.rows.push_back(
        {CellOf(i["name"]), CellOf(i["role"]), CellOf(i["ready"]), CellOf(i["phase"]),
         i["lagBytes"].is_null() ? "-" : HumanBytes(i["lagBytes"].get<int64_t>()),
         i["timeline"].get<int64_t>() == 0 ? "-" : CellOf(i["timeline"]),
         ChecksSummary(i["checks"]), CellOf(i["message"])});
  }
  section("Instances:", insts, "  (none reported yet)");

  Table svcs{{"NAME", "TYPE", "ADDRESS", "PORTS", "ENDPOINTS"}, {}};
  for (const auto& s : report["services"]) {
    std::string address = s["localAddress"].get<std::string>().empty()
                              ? CellOf(s["clusterIP"])
                              : s["localAddress"].get<std::string>() + " (local)";
    std::string ports;
    for (const auto& p : s["ports"]) ports += (ports.empty() ? "" : ",") + p.dump();
    std::string eps;
    for (const auto& e : s["endpoints"]) eps += (eps.empty() ? "" : ", ") + e.get<std::string>();
    for (const auto& e : s["notReadyEndpoints"]) {
      eps += (eps.empty() ? "" : ", ") + e.get<std::string>() + " [not ready]";
    }
    svcs.rows.push_back({CellOf(s["name"]), CellOf(s["type"]), address, Dash(ports), Dash(eps)});
  }
  section("Services:", svcs, "  (none yet)");

  Table atts{{"NAMESPACE", "NAME", "DATABASE", "ROLE", "PRIVILEGES", "PHASE", "SECRET"}, {}};
  for (const auto& a : report["attachments"]) {
    atts.rows.push_back({CellOf(a["namespace"]), CellOf(a["name"]), CellOf(a["database"]),
                         CellOf(a["role"]), CellOf(a["privileges"]), CellOf(a["phase"]),
                         CellOf(a["secret"])});
  }
  section("Attachments:", atts, "  (none)");
  if (report.contains("attachmentsNote")) {
    out += "  note: " + report["attachmentsNote"].get<std::string>() + "\n";
  }
  return out;
}

// ---- checks list ------------------------------------------------------------------------------

std::string ChecksSummary(const Json& checks) {
  if (!checks.is_array() || checks.empty()) return "-";
  std::map<std::string, int> by_status;
  for (const auto& c : checks) ++by_status[Str(c, "/status"_json_pointer, "unknown")];
  std::string out = std::to_string(checks.size()) + " total";
  for (const char* s : {"passing", "warning", "critical"}) {
    if (by_status.count(s)) out += ", " + std::to_string(by_status[s]) + " " + s;
    by_status.erase(s);
  }
  for (const auto& [s, n] : by_status) out += ", " + std::to_string(n) + " " + s;
  return out;
}

Json ChecksReport(const Json& cluster) {
  Json rows = Json::array();
  if (cluster.contains("/status/instances"_json_pointer) &&
      cluster["status"]["instances"].is_array()) {
    for (const auto& inst : cluster["status"]["instances"]) {
      Json base = {{"instance", Str(inst, "/name"_json_pointer)},
                   {"role", Str(inst, "/role"_json_pointer)}};
      Json checks = InstanceChecks(inst);
      if (checks.is_null() || checks.empty()) {
        Json row = base;
        row.update({{"name", nullptr}, {"status", nullptr}, {"output", nullptr}});
        rows.push_back(std::move(row));
        continue;
      }
      for (const auto& c : checks) {
        Json row = base;
        row.update(c);
        rows.push_back(std::move(row));
      }
    }
  }
  return {{"cluster", meta::Key(cluster).ToString()}, {"checks", rows}};
}

std::string RenderChecksText(const Json& report) {
  std::string out = "Health checks of " + report["cluster"].get<std::string>() + "\n";
  Table t{{"INSTANCE", "ROLE", "NAME", "STATUS", "OUTPUT"}, {}};
  for (const auto& r : report["checks"]) {
    t.rows.push_back({CellOf(r["instance"]), CellOf(r["role"]), CellOf(r["name"]),
                      CellOf(r["status"]), CellOf(r["output"])});
  }
  return out + (t.rows.empty() ? "  (no instances reported yet)\n" : RenderTable(t));
}

// ---- switchover ---------------------------------------------------------------------------------

Result<std::string> ChooseSwitchoverTarget(const Json& cluster, const std::string& requested) {
  const std::string name = meta::Name(cluster);
  const std::string primary = Str(cluster, "/status/currentPrimary"_json_pointer);
  const std::string target = Str(cluster, "/status/targetPrimary"_json_pointer);
  if (primary.empty()) {
    return UnavailableError("cluster " + name +
                            " has no primary yet; wait until its status shows one");
  }
  if (!target.empty() && target != primary) {
    return UnavailableError("a switchover from " + primary + " to " + target +
                            " is already under way; wait for it to finish");
  }
  if (!requested.empty()) {
    if (requested == primary) {
      return InvalidError(requested + " is already the primary of cluster " + name +
                          "; pick a replica with --to (instances: " + MemberList(cluster) + ")");
    }
    const Json* inst = FindInstance(cluster, requested);
    if (inst == nullptr) {
      return NotFoundError("cluster " + name + " has no instance \"" + requested +
                           "\" (instances: " + MemberList(cluster) + ")");
    }
    if (!inst->value("ready", false)) {
      std::string phase = Str(*inst, "/phase"_json_pointer);
      return UnavailableError("instance " + requested + " is not ready" +
                              (phase.empty() ? "" : " (phase " + phase + ")") +
                              "; a switchover needs a ready, streaming replica");
    }
    return requested;
  }
  const Json* best = nullptr;
  std::optional<uint64_t> best_lsn;
  auto lag = [](const Json& i) {
    int64_t l = Int(i, "/lagBytes"_json_pointer, -1);
    return l < 0 ? std::numeric_limits<int64_t>::max() : l;
  };
  static const Json kNone = Json::array();
  const Json& instances = cluster.contains("/status/instances"_json_pointer)
                              ? cluster.at("/status/instances"_json_pointer)
                              : kNone;
  for (const auto& inst : instances) {
    std::string n = Str(inst, "/name"_json_pointer);
    if (n == primary || !inst.value("ready", false)) continue;
    std::optional<uint64_t> lsn = ParseLsn(Str(inst, "/lsn"_json_pointer));
    bool better = best == nullptr || lsn.value_or(0) > best_lsn.value_or(0) ||
                  (lsn.value_or(0) == best_lsn.value_or(0) &&
                   (lag(inst) < lag(*best) ||
                    (lag(inst) == lag(*best) && n < Str(*best, "/name"_json_pointer))));
    if (better) {
      best = &inst;
      best_lsn = lsn;
    }
  }
  if (best == nullptr) {
    return UnavailableError("cluster " + name + " has no ready replica to switch over to (" +
                            "instances: " + MemberList(cluster) + ")");
  }
  return Str(*best, "/name"_json_pointer);
}

SwitchoverProgress EvaluateSwitchover(const Json& cluster, const std::string& target) {
  const std::string primary = Str(cluster, "/status/currentPrimary"_json_pointer);
  const std::string now_target = Str(cluster, "/status/targetPrimary"_json_pointer);
  std::string reason = Str(cluster, "/status/phaseReason"_json_pointer);
  std::string phase = Str(cluster, "/status/phase"_json_pointer, "Pending");
  std::string where = phase + (reason.empty() ? "" : " (" + reason + ")");
  if (primary == target) {
    const Json* inst = FindInstance(cluster, target);
    if (inst != nullptr && inst->value("ready", false) && Str(*inst, "/role"_json_pointer) == "primary") {
      return {SwitchoverState::kDone, target + " is the primary"};
    }
    return {SwitchoverState::kInProgress, target + " is being promoted: " + where};
  }
  if (!now_target.empty() && now_target != target) {
    return {SwitchoverState::kAborted,
            "the controller did not carry out the switchover: status.targetPrimary is now " +
                now_target + " and " + primary + " is still the primary; cluster phase " + where +
                " (see its events: kubectl get events --field-selector involvedObject.name=" +
                meta::Name(cluster) + ")"};
  }
  return {SwitchoverState::kInProgress, "primary still " + primary + ": " + where};
}

// ---- logs ---------------------------------------------------------------------------------------

Result<std::vector<LogSource>> LogSources(const std::string& cluster,
                                          const std::vector<Json>& pods,
                                          const std::string& instance) {
  std::vector<LogSource> out;
  std::string names;
  for (const auto& pod : pods) {
    std::string pod_name = meta::Name(pod);
    names += (names.empty() ? "" : ", ") + pod_name;
    if (!instance.empty() && pod_name != instance) continue;
    LogSource source{pod_name, "", Str(pod, "/spec/nodeName"_json_pointer)};
    if (pod.contains("/spec/containers"_json_pointer) && pod["spec"]["containers"].is_array()) {
      for (const auto& c : pod["spec"]["containers"]) {
        std::string n = Str(c, "/name"_json_pointer);
        if (source.container.empty() || n == "postgres") source.container = n;
        if (n == "postgres") break;
      }
    }
    out.push_back(std::move(source));
  }
  std::sort(out.begin(), out.end(),
            [](const LogSource& a, const LogSource& b) { return a.pod < b.pod; });
  if (out.empty()) {
    if (pods.empty()) {
      return NotFoundError("cluster " + cluster +
                           " has no Pods yet; its status says what it is waiting for");
    }
    return NotFoundError("cluster " + cluster + " has no instance \"" + instance +
                         "\" (instances: " + names + ")");
  }
  return out;
}

std::string PodLogPath(const std::string& namespace_, const LogSource& source, int64_t tail_lines,
                       LogFollow follow) {
  std::string path = "/api/v1/namespaces/" + namespace_ + "/pods/" + source.pod + "/log";
  std::string query;
  auto add = [&query](const std::string& kv) { query += (query.empty() ? "?" : "&") + kv; };
  if (!source.container.empty()) add("container=" + source.container);
  if (tail_lines >= 0) add("tailLines=" + std::to_string(tail_lines));
  if (follow == LogFollow::kYes) add("follow=true");
  return path + query;
}

// ---- users list / db list --------------------------------------------------------------------

namespace {

std::string SourceLine(const CatalogSources& sources) {
  if (sources.live) {
    return "live SQL on " + sources.live_address +
           " (as postgres), joined with PostgresAttachment objects";
  }
  std::string s = "PostgresAttachment objects and the cluster spec (no live SQL";
  if (!sources.note.empty()) s += ": " + sources.note;
  return s + ")";
}

}  // namespace

Json UsersReport(const Json& cluster, const std::vector<Json>& attachments,
                 const CatalogSources& sources) {
  std::vector<Json> summaries;
  for (const auto& a : attachments) summaries.push_back(AttachmentSummary(a));
  std::string bootstrap_db;
  std::string bootstrap_owner = ClusterDatabaseOwner(cluster, &bootstrap_db);

  auto owner_of = [&](const std::string& role, const std::optional<ObjectKey>& marker) -> Json {
    for (const auto& s : summaries) {
      bool by_marker = marker && marker->namespace_ == s["namespace"] && marker->name == s["name"];
      if (by_marker || (!marker && s["role"] == role)) {
        return {{"kind", "attachment"},
                {"attachment", AttachmentRef(s)},
                {"database", s["database"]},
                {"privileges", s["privileges"]},
                {"phase", s["phase"]}};
      }
    }
    if (marker) {
      return {{"kind", "attachment"},
              {"attachment", marker->ToString()},
              {"database", nullptr},
              {"privileges", nullptr},
              {"phase", "Orphaned"}};
    }
    if (role == kPostgresSuperuser) return {{"kind", "petrel"}, {"phase", "superuser"}};
    if (role == "streaming_replica") return {{"kind", "petrel"}, {"phase", "replication"}};
    if (role == bootstrap_owner) {
      return {{"kind", "bootstrap"}, {"database", bootstrap_db}, {"privileges", "owner"}};
    }
    return {{"kind", "unmanaged"}};
  };

  Json users = Json::array();
  auto add = [&users](const std::string& role, Json owner, Json extra) {
    Json u = {{"role", role}, {"ownedBy", std::move(owner)}};
    u.update(extra);
    users.push_back(std::move(u));
  };
  if (sources.live) {
    std::set<std::string> seen;
    for (const auto& r : sources.live->roles) {
      seen.insert(r.name);
      add(r.name, owner_of(r.name, r.attachment),
          {{"superuser", r.superuser},
           {"connectionLimit", r.connection_limit},
           {"inDatabase", true}});
    }
    for (const auto& s : summaries) {
      if (seen.count(s["role"].get<std::string>()) == 0) {
        add(s["role"], owner_of(s["role"], std::nullopt), {{"inDatabase", false}});
      }
    }
  } else {
    add(kPostgresSuperuser, owner_of(kPostgresSuperuser, std::nullopt), Json::object());
    add("streaming_replica", owner_of("streaming_replica", std::nullopt), Json::object());
    add(bootstrap_owner, owner_of(bootstrap_owner, std::nullopt), Json::object());
    for (const auto& s : summaries)
      add(s["role"], owner_of(s["role"], std::nullopt), Json::object());
  }
  return {{"cluster", meta::Key(cluster).ToString()},
          {"source", sources.live ? "live" : "objects"},
          {"sourceDetail", SourceLine(sources)},
          {"users", users}};
}

Json DatabasesReport(const Json& cluster, const std::vector<Json>& attachments,
                     const CatalogSources& sources) {
  std::vector<Json> summaries;
  for (const auto& a : attachments) summaries.push_back(AttachmentSummary(a));
  std::string bootstrap_db;
  std::string bootstrap_owner = ClusterDatabaseOwner(cluster, &bootstrap_db);

  struct Entry {
    Json owner_role = nullptr;
    Json owned_by = nullptr;
    Json access = Json::array();
    Json size = nullptr;
    bool in_database = false;
  };
  std::map<std::string, Entry> dbs;
  if (sources.live) {
    for (const auto& d : sources.live->databases) {
      Entry& e = dbs[d.name];
      e.owner_role = d.owner;
      e.size = d.size_bytes;
      e.in_database = true;
    }
  } else {
    Entry& e = dbs[bootstrap_db];
    e.owner_role = bootstrap_owner;
    e.owned_by = "bootstrap";
    dbs["postgres"].owner_role = "postgres";
    dbs["postgres"].owned_by = "petrel";
  }
  for (const auto& s : summaries) {
    std::string db = s["database"];
    if (db.empty()) continue;
    Entry& e = dbs[db];
    if (s["privileges"] == "owner") {
      e.owned_by = "attachment " + AttachmentRef(s);
      if (e.owner_role.is_null()) e.owner_role = s["role"];
    } else {
      e.access.push_back(AttachmentRef(s) + " (" + s["privileges"].get<std::string>() + ")");
    }
  }
  if (dbs.count(bootstrap_db) && dbs[bootstrap_db].owned_by.is_null()) {
    dbs[bootstrap_db].owned_by = "bootstrap";
  }
  if (dbs.count("postgres") && dbs["postgres"].owned_by.is_null()) {
    dbs["postgres"].owned_by = "petrel";
  }

  Json list = Json::array();
  for (const auto& [name, e] : dbs) {
    Json d = {
        {"name", name}, {"ownerRole", e.owner_role}, {"ownedBy", e.owned_by}, {"access", e.access}};
    if (sources.live) {
      d["sizeBytes"] = e.size;
      d["inDatabase"] = e.in_database;
    }
    list.push_back(std::move(d));
  }
  return {{"cluster", meta::Key(cluster).ToString()},
          {"source", sources.live ? "live" : "objects"},
          {"sourceDetail", SourceLine(sources)},
          {"databases", list}};
}

std::string RenderUsersText(const Json& report) {
  bool live = report["source"] == "live";
  Table t{{"ROLE", "OWNED BY", "DATABASE", "PRIVILEGES", "STATE"}, {}};
  for (const auto& u : report["users"]) {
    const Json& o = u["ownedBy"];
    std::string kind = o["kind"];
    std::string owner =
        kind == "attachment" ? "attachment " + o["attachment"].get<std::string>() : kind;
    std::string state = o.contains("phase") ? CellOf(o["phase"]) : "-";
    if (live) {
      if (!u["inDatabase"].get<bool>()) state += ", not in database";
      if (u.value("superuser", false)) state = "superuser";
    }
    t.rows.push_back({CellOf(u["role"]), owner,
                      o.contains("database") ? CellOf(o["database"]) : "-",
                      o.contains("privileges") ? CellOf(o["privileges"]) : "-", state});
  }
  return RenderTable(t) + "\nsource: " + report["sourceDetail"].get<std::string>() + "\n";
}

std::string RenderDatabasesText(const Json& report) {
  bool live = report["source"] == "live";
  Table t{{"DATABASE", "OWNER ROLE", "OWNED BY", "SHARED WITH"}, {}};
  if (live) t.headers.push_back("SIZE");
  for (const auto& d : report["databases"]) {
    std::string shared;
    for (const auto& a : d["access"]) shared += (shared.empty() ? "" : ", ") + a.get<std::string>();
    std::vector<std::string> row{CellOf(d["name"]), CellOf(d["ownerRole"]), CellOf(d["ownedBy"]),
                                 Dash(shared)};
    if (live) {
      row.push_back(d["inDatabase"].get<bool>() ? HumanBytes(d["sizeBytes"].get<int64_t>())
                                                : "not in database");
    }
    t.rows.push_back(std::move(row));
  }
  return RenderTable(t) + "\nsource: " + report["sourceDetail"].get<std::string>() + "\n";
}

Result<std::pair<std::string, int>> ServiceAddress(const Json& service) {
  int port = 5432;
  if (service.contains("/spec/ports/0/port"_json_pointer)) {
    port = static_cast<int>(Int(service, "/spec/ports/0/port"_json_pointer, 5432));
  }
  std::string local = meta::Annotation(service, "petrel.dev/local-address");
  if (!local.empty()) {
    static const std::regex kHostPort(R"(^([^:\s]+)(?::([0-9]{1,5}))?$)");
    std::smatch m;
    if (!std::regex_match(local, m, kHostPort)) {
      return InvalidError("Service " + meta::Name(service) +
                          ": annotation petrel.dev/local-address is not host[:port]");
    }
    return std::make_pair(m[1].str(), m[2].matched ? std::stoi(m[2].str()) : port);
  }
  std::string ip = Str(service, "/spec/clusterIP"_json_pointer);
  if (ip.empty() || ip == "None") {
    return NotFoundError("Service " + meta::Name(service) + " has no address yet");
  }
  return std::make_pair(ip, port);
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// ---- attach ----------------------------------------------------------------------------------

Result<AttachPrivileges> ParseAttachPrivileges(const std::string& text) {
  if (text == "owner") return AttachPrivileges::kOwner;
  if (text == "readWrite") return AttachPrivileges::kReadWrite;
  if (text == "readOnly") return AttachPrivileges::kReadOnly;
  return InvalidError("unknown --privileges \"" + text + "\": use owner, readWrite or readOnly");
}

Result<Json> BuildAttachment(const AttachRequest& request) {
  const char* privileges = request.privileges == AttachPrivileges::kOwner       ? "owner"
                           : request.privileges == AttachPrivileges::kReadWrite ? "readWrite"
                                                                                : "readOnly";
  Json spec = {{"clusterRef", {{"name", request.cluster.name}}}, {"privileges", privileges}};
  if (request.cluster.namespace_ != request.app.namespace_) {
    spec["clusterRef"]["namespace"] = request.cluster.namespace_;
  }
  if (!request.database.empty()) spec["databaseName"] = request.database;
  if (!request.role.empty()) spec["roleName"] = request.role;
  Json object = {{"apiVersion", resources::kPostgresAttachment.ApiVersion()},
                 {"kind", resources::kPostgresAttachment.kind},
                 {"metadata", {{"name", request.app.name}, {"namespace", request.app.namespace_}}},
                 {"spec", spec}};
  static const std::regex kDnsLabel(R"(^[a-z0-9]([-a-z0-9]*[a-z0-9])?$)");
  std::vector<StatusCause> problems;
  if (request.app.name.size() > 63 || !std::regex_match(request.app.name, kDnsLabel)) {
    problems.push_back({"metadata.name", "FieldValueInvalid",
                        "the app name \"" + request.app.name +
                            "\" must be a DNS label: lower-case letters, digits and '-', "
                            "at most 63 characters"});
  }
  if (problems.empty()) {
    auto parsed = ParseAttachment(object);
    if (!parsed.ok()) return parsed.status();
    return object;
  }
  return InvalidError(problems.front().message).WithCauses(problems);
}

// ---- create ----------------------------------------------------------------------------------

Result<Preset> ParsePreset(const std::string& text) {
  if (text == "development" || text == "dev") return Preset::kDevelopment;
  if (text == "production" || text == "prod") return Preset::kProduction;
  return InvalidError("unknown --preset \"" + text + "\": use development or production");
}

Result<Json> BuildClusterFromPreset(const CreateRequest& request) {
  bool production = request.preset == Preset::kProduction;
  int replicas = request.replicas.value_or(production ? 3 : 1);
  std::string storage = request.storage.value_or(production ? "10Gi" : "1Gi");
  std::string image = request.image.value_or(kDefaultImage);

  std::vector<StatusCause> problems;
  auto problem = [&problems](const std::string& field, const std::string& message) {
    problems.push_back({field, "FieldValueInvalid", message});
  };
  // Instances are "<name>-<serial>" and Services "<name>-rw": both must stay DNS labels.
  static const std::regex kDnsLabel(R"(^[a-z]([-a-z0-9]*[a-z0-9])?$)");
  if (request.cluster.name.size() > 50 || !std::regex_match(request.cluster.name, kDnsLabel)) {
    problem("metadata.name", "cluster name \"" + request.cluster.name +
                                 "\" must start with a letter, hold only lower-case letters, "
                                 "digits and '-', and be at most 50 characters");
  }
  if (replicas < 1 || replicas > 64) {
    problem("spec.replicas",
            "--replicas must be between 1 and 64 (got " + std::to_string(replicas) + ")");
  } else if (production && replicas < 2) {
    problem("spec.replicas",
            "the production preset replicates synchronously and needs --replicas 2 or more; "
            "use --preset development for a single instance");
  }
  static const std::regex kSize(R"(^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$)");
  if (!std::regex_match(storage, kSize)) {
    problem("spec.storage.size",
            "--storage \"" + storage + "\" is not a size; write it like 10Gi or 500Mi");
  }
  if (image.empty() || image.find_first_of(" \t\n") != std::string::npos) {
    problem("spec.image", "--image must be an image reference like " + std::string(kDefaultImage));
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p.message;
    return InvalidError(message).WithCauses(problems);
  }

  Json spec = {{"replicas", replicas}, {"image", image}};
  if (production) {
    spec["resources"] = {{"requests", {{"cpu", "1"}, {"memory", "2Gi"}}},
                         {"limits", {{"memory", "2Gi"}}}};
    spec["storage"] = {{"size", storage}, {"reclaimPolicy", "Retain"}};
    spec["postgresql"] = {
        {"synchronous", {{"method", "any"}, {"number", 1}, {"dataDurability", "required"}}}};
    spec["enablePDB"] = true;
  } else {
    spec["resources"] = {{"requests", {{"cpu", "250m"}, {"memory", "256Mi"}}},
                         {"limits", {{"memory", "256Mi"}}}};
    spec["storage"] = {{"size", storage}, {"reclaimPolicy", "Delete"}};
    spec["enablePDB"] = false;
  }
  if (request.postgres_version) spec["postgresVersion"] = *request.postgres_version;
  spec["bootstrap"] = {{"initdb", {{"database", "app"}}}};
  auto parsed = ParseClusterSpec(spec);
  if (!parsed.ok()) return parsed.status();
  return Json{
      {"apiVersion", resources::kPostgresCluster.ApiVersion()},
      {"kind", resources::kPostgresCluster.kind},
      {"metadata", {{"name", request.cluster.name}, {"namespace", request.cluster.namespace_}}},
      {"spec", spec}};
}

// ---- connect ---------------------------------------------------------------------------------

PsqlInvocation BuildPsqlInvocation(const std::string& host, int port, const std::string& user,
                                   const std::string& database, const std::string& password) {
  PsqlInvocation inv;
  inv.argv = {"psql",       "--host", host,       "--port", std::to_string(port),
              "--username", user,     "--dbname", database};
  inv.env["PGPASSWORD"] = password;
  inv.env["PGCONNECT_TIMEOUT"] = "10";
  return inv;
}

namespace {

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Result<PsqlInvocation> PsqlFromDatabaseUrl(const std::string& url) {
  static const std::string kSchemes[] = {"postgresql://", "postgres://"};
  std::string scheme;
  for (const auto& s : kSchemes) {
    if (url.rfind(s, 0) == 0) scheme = s;
  }
  if (scheme.empty()) {
    return InvalidError("the attachment's DATABASE_URL is not a postgres:// URL");
  }
  std::string rest = url.substr(scheme.size());
  size_t at = rest.find('@');
  size_t slash = rest.find('/');
  std::string password;
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    std::string userinfo = rest.substr(0, at);
    size_t colon = userinfo.find(':');
    if (colon != std::string::npos) {
      password = PercentDecode(userinfo.substr(colon + 1));
      rest = userinfo.substr(0, colon) + rest.substr(at);
    }
  }
  PsqlInvocation inv;
  inv.argv = {"psql", "--dbname", scheme + rest};
  inv.env["PGPASSWORD"] = password;
  inv.env["PGCONNECT_TIMEOUT"] = "10";
  return inv;
}

}  // namespace petrel::plugin
