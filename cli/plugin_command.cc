#include "cli/plugin_command.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <iostream>
#include <memory>
#include <optional>

#include "api/attachment.h"
#include "core/base64.h"
#include "cli/plugin/output.h"
#include "cli/plugin/snapshot_views.h"
#include "cli/plugin/views.h"
#include "controller/http_kube_client.h"
#include "controller/kubeconfig.h"
#include "local/kube_api.h"
#include "local/store.h"
#include "core/object.h"
#include "core/status.h"
#include "core/types.h"
#include "pg/attach_sql.h"
#include "pg/conn.h"

namespace petrel {
namespace {

using plugin::OutputFormat;

// `kubectl petrel …` (kubectl's kubeconfig rules) or `petrel …` (local mode: falls back to the
// kubeconfig that `petrel local up` writes into its state directory).
enum class PluginMode { kKubectl, kLocal };

struct GlobalFlags {
  PluginMode mode = PluginMode::kKubectl;
  std::string kubeconfig;
  std::string context;
  std::string namespace_;
  std::string output;
  std::string state_dir;  // local mode only
  bool all_namespaces = false;
};

// An open connection to the API plus the resolved namespace and output format.
struct Session {
  std::string cli;  // how the user runs these commands, for hints: "kubectl petrel" or "petrel"
  std::unique_ptr<HttpKubeClient> client;
  std::string namespace_;
  OutputFormat format = OutputFormat::kTable;
  bool all_namespaces = false;
};

// Local mode without --kubeconfig or $KUBECONFIG: the running petrel local's kubeconfig.
Result<std::string> LocalKubeconfig(const GlobalFlags& flags) {
  std::filesystem::path state =
      flags.state_dir.empty() ? DefaultLocalStateDir() : std::filesystem::absolute(flags.state_dir);
  std::filesystem::path path = state / kLocalKubeconfigFile;
  std::error_code ec;
  if (StateDirLock::HolderPid(state) == 0 || !std::filesystem::exists(path, ec)) {
    return NotFoundError("no petrel local is running with state directory " + state.string() +
                         "; start one with `petrel local up -f FILE` (or pass --state-dir), or "
                         "point at a Kubernetes cluster with --kubeconfig or $KUBECONFIG");
  }
  return path.string();
}

Result<Session> OpenSession(const GlobalFlags& flags) {
  Session session;
  session.cli = flags.mode == PluginMode::kLocal ? "petrel" : "kubectl petrel";
  PETREL_ASSIGN_OR_RETURN(session.format, plugin::ParseOutputFormat(flags.output));
  Result<KubeConfig> config = InternalError("unset");
  const char* env_kubeconfig = std::getenv("KUBECONFIG");
  bool env_set = env_kubeconfig != nullptr && *env_kubeconfig != '\0';
  if (flags.mode == PluginMode::kLocal && flags.kubeconfig.empty() && !env_set) {
    PETREL_ASSIGN_OR_RETURN(std::string local, LocalKubeconfig(flags));
    config = LoadKubeconfigFiles({local}, flags.context);
  } else if (!flags.kubeconfig.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(flags.kubeconfig, ec)) {
      return NotFoundError("kubeconfig file \"" + flags.kubeconfig +
                           "\" does not exist; pass an existing file with --kubeconfig");
    }
    config = LoadKubeconfigFiles({flags.kubeconfig}, flags.context);
  } else {
    config = LoadKubeconfig(flags.context);
  }
  if (!config.ok()) {
    return config.status().Annotate(
        "loading kubeconfig (set --kubeconfig or $KUBECONFIG, or pick one with --context)");
  }
  HttpKubeClientOptions options;
  options.request_timeout = std::chrono::seconds(20);
  options.max_attempts = 3;
  options.user_agent = kKubectlPluginName;
  PETREL_ASSIGN_OR_RETURN(session.client, HttpKubeClient::Create(*config, options));
  session.namespace_ = flags.namespace_.empty() ? config->namespace_ : flags.namespace_;
  if (session.namespace_.empty()) session.namespace_ = "default";
  session.all_namespaces = flags.all_namespaces;
  return session;
}

// The cluster, or an error that says what is missing: the CRD, the namespace or the cluster.
Result<Json> GetCluster(Session& s, const std::string& name) {
  auto cluster = s.client->Get(resources::kPostgresCluster, {s.namespace_, name});
  if (cluster.ok() || cluster.status().code() != Code::kNotFound) {
    if (!cluster.ok()) return cluster.status().Annotate("reading PostgresCluster " + name);
    return cluster;
  }
  auto group = s.client->RawGet("/apis/petrel.dev/v1alpha1");
  if (!group.ok() && group.status().code() == Code::kNotFound) {
    return NotFoundError(
        "the PostgresCluster API (petrel.dev/v1alpha1) is not installed in this Kubernetes "
        "cluster; install Petrel's CRDs first (kubectl apply -f crds/)");
  }
  auto ns = s.client->Get(resources::kNamespace, {"", s.namespace_});
  if (!ns.ok() && ns.status().code() == Code::kNotFound) {
    return NotFoundError(
        "namespace \"" + s.namespace_ +
        "\" does not exist; list clusters everywhere with: " + s.cli + " list -A");
  }
  return NotFoundError(plugin::ClusterNotFoundMessage(name, s.namespace_, s.cli));
}

// Attachments that reference `cluster`, from every namespace the caller may list.
Result<std::vector<Json>> AttachmentsOf(Session& s, const ObjectKey& cluster, std::string* note) {
  auto all = s.client->ListAll(resources::kPostgresAttachment, "", {});
  if (!all.ok() && all.status().code() == Code::kForbidden) {
    *note = "attachments listed in namespace " + cluster.namespace_ +
            " only (no permission to list them in all namespaces)";
    all = s.client->ListAll(resources::kPostgresAttachment, cluster.namespace_, {});
  }
  if (!all.ok()) return all.status().Annotate("listing PostgresAttachments");
  std::vector<Json> out;
  for (auto& a : all->items) {
    if (plugin::AttachmentReferences(a, cluster)) out.push_back(std::move(a));
  }
  return out;
}

std::string SecretValue(const Json& secret, const std::string& key) {
  if (!secret.contains("data") || !secret["data"].contains(key) ||
      !secret["data"][key].is_string()) {
    return "";
  }
  return Base64Decode(secret["data"][key].get<std::string>()).value_or("");
}

struct SuperuserLogin {
  std::string user;
  std::string password;  // secret: never printed
};

Result<SuperuserLogin> ReadSuperuser(Session& s, const std::string& cluster) {
  std::string name = cluster + "-superuser";
  auto secret = s.client->Get(resources::kSecret, {s.namespace_, name});
  if (!secret.ok()) {
    return secret.status().Annotate("cannot read Secret " + s.namespace_ + "/" + name);
  }
  SuperuserLogin login{SecretValue(*secret, "username"), SecretValue(*secret, "password")};
  if (login.user.empty()) login.user = kPostgresSuperuser;
  if (login.password.empty()) {
    return InvalidError("Secret " + s.namespace_ + "/" + name + " has no data.password");
  }
  return login;
}

// Reads the live catalog when the superuser Secret is readable and the primary's Service has a
// loopback address (local mode); otherwise says why not.
plugin::CatalogSources ReadCatalog(Session& s, const std::string& cluster) {
  plugin::CatalogSources sources;
  auto login = ReadSuperuser(s, cluster);
  if (!login.ok()) {
    sources.note = login.status().message();
    return sources;
  }
  auto svc = s.client->Get(resources::kService, {s.namespace_, cluster + "-rw"});
  if (!svc.ok()) {
    sources.note = svc.status().Annotate("cannot read Service " + cluster + "-rw").message();
    return sources;
  }
  auto address = plugin::ServiceAddress(*svc);
  if (!address.ok()) {
    sources.note = address.status().message();
    return sources;
  }
  auto [host, port] = *address;
  if (!plugin::IsLoopbackHost(host)) {
    sources.note =
        "Service " + cluster + "-rw (" + host + ") is not a loopback address reachable from here";
    return sources;
  }
  PgConnectOptions options;
  options.connect_timeout = std::chrono::seconds(5);
  options.statement_timeout = std::chrono::seconds(10);
  options.application_name = kKubectlPluginName;
  auto conn = PgConn::Connect(ConnInfo({{"host", host},
                                        {"port", std::to_string(port)},
                                        {"user", login->user},
                                        {"dbname", "postgres"}}),
                              login->password, options);
  if (!conn.ok()) {
    sources.note =
        "connecting to " + host + ":" + std::to_string(port) + ": " + conn.status().message();
    return sources;
  }
  auto dbs = attach_sql::ListDatabases(*conn);
  auto roles = attach_sql::ListLoginRoles(*conn);
  if (!dbs.ok() || !roles.ok()) {
    sources.note = (dbs.ok() ? roles.status() : dbs.status()).message();
    return sources;
  }
  plugin::LiveCatalog live;
  for (const auto& d : *dbs) live.databases.push_back({d.name, d.owner, d.size_bytes});
  for (const auto& r : *roles) {
    live.roles.push_back({r.name, r.superuser, r.connection_limit, r.attachment});
  }
  sources.live = std::move(live);
  sources.live_address = host + ":" + std::to_string(port);
  return sources;
}

Status Print(const Session& s, const Json& doc, const std::function<std::string()>& table) {
  if (s.format == OutputFormat::kTable) {
    std::cout << table();
    return Status::Ok();
  }
  PETREL_ASSIGN_OR_RETURN(std::string text, plugin::RenderDocument(doc, s.format));
  std::cout << text;
  return Status::Ok();
}

// ---- commands --------------------------------------------------------------------------------

Status RunList(Session& s) {
  std::string ns = s.all_namespaces ? "" : s.namespace_;
  auto list = s.client->ListAll(resources::kPostgresCluster, ns, {});
  if (!list.ok()) {
    if (list.status().code() == Code::kNotFound) {
      return NotFoundError(
          "the PostgresCluster API (petrel.dev/v1alpha1) is not installed in this Kubernetes "
          "cluster; install Petrel's CRDs first (kubectl apply -f crds/)");
    }
    return list.status().Annotate("listing PostgresClusters");
  }
  Json summaries = Json::array();
  for (const auto& c : list->items) summaries.push_back(plugin::ClusterSummary(c));
  if (summaries.empty() && s.format == OutputFormat::kTable) {
    std::cerr << (s.all_namespaces
                      ? "No PostgresClusters found.\n"
                      : "No PostgresClusters found in namespace " + s.namespace_ + ".\n");
    return Status::Ok();
  }
  return Print(s, Json{{"clusters", summaries}}, [&] {
    return plugin::RenderTable(plugin::ClusterListTable(summaries, s.all_namespaces));
  });
}

Status RunStatus(Session& s, const std::string& name) {
  plugin::ClusterObjects objects;
  PETREL_ASSIGN_OR_RETURN(objects.cluster, GetCluster(s, name));
  for (const char* suffix : {"-rw", "-ro", "-r"}) {
    ObjectKey key{s.namespace_, name + suffix};
    auto svc = s.client->Get(resources::kService, key);
    if (svc.ok()) {
      objects.services.push_back(*svc);
      auto ep = s.client->Get(resources::kEndpoints, key);
      if (ep.ok()) objects.endpoints.push_back(*ep);
    } else if (svc.status().code() != Code::kNotFound) {
      return svc.status().Annotate("reading Service " + key.ToString());
    }
  }
  PETREL_ASSIGN_OR_RETURN(objects.attachments,
                          AttachmentsOf(s, {s.namespace_, name}, &objects.attachments_scope_note));
  Json report = plugin::StatusReport(objects);
  return Print(s, report, [&] { return plugin::RenderStatusText(report); });
}

enum class CatalogView { kUsers, kDatabases };

Status RunCatalog(Session& s, const std::string& name, CatalogView view) {
  PETREL_ASSIGN_OR_RETURN(Json cluster, GetCluster(s, name));
  std::string note;
  PETREL_ASSIGN_OR_RETURN(auto attachments, AttachmentsOf(s, {s.namespace_, name}, &note));
  plugin::CatalogSources sources = ReadCatalog(s, name);
  if (!note.empty()) sources.note += (sources.note.empty() ? "" : "; ") + note;
  Json report = view == CatalogView::kUsers
                    ? plugin::UsersReport(cluster, attachments, sources)
                    : plugin::DatabasesReport(cluster, attachments, sources);
  return Print(s, report, [&] {
    return view == CatalogView::kUsers ? plugin::RenderUsersText(report)
                                       : plugin::RenderDatabasesText(report);
  });
}

struct ConnectFlags {
  bool replica = false;
  std::string database;
  std::string as;
};

[[noreturn]] void ExecPsql(const plugin::PsqlInvocation& inv) {
  for (const auto& [key, value] : inv.env) ::setenv(key.c_str(), value.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& a : inv.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout.flush();
  ::execvp(argv[0], argv.data());
  std::cerr << "error: cannot run psql: " << std::strerror(errno)
            << " (install the PostgreSQL client, e.g. apt-get install postgresql-client)\n";
  std::_Exit(1);
}

Status RunConnect(Session& s, const std::string& name, const ConnectFlags& flags) {
  PETREL_ASSIGN_OR_RETURN(Json cluster, GetCluster(s, name));
  if (!flags.as.empty()) {
    auto attachment = s.client->Get(resources::kPostgresAttachment, {s.namespace_, flags.as});
    if (!attachment.ok()) {
      if (attachment.status().code() == Code::kNotFound) {
        return NotFoundError("no PostgresAttachment \"" + flags.as + "\" in namespace \"" +
                             s.namespace_ + "\"; see the cluster's attachments with: " +
                             s.cli + " status " + name + " -n " + s.namespace_);
      }
      return attachment.status().Annotate("reading PostgresAttachment " + flags.as);
    }
    if (!plugin::AttachmentReferences(*attachment, {s.namespace_, name})) {
      return InvalidError("PostgresAttachment " + s.namespace_ + "/" + flags.as +
                          " is not attached to cluster " + name);
    }
    PETREL_ASSIGN_OR_RETURN(AttachmentSpec spec, ParseAttachment(*attachment));
    auto secret = s.client->Get(resources::kSecret, {s.namespace_, spec.secret_name});
    if (!secret.ok()) {
      return secret.status().Annotate("reading Secret " + spec.secret_name + " of attachment " +
                                      flags.as + " (it appears once the attachment is Ready)");
    }
    std::string url = SecretValue(*secret, "DATABASE_URL");
    if (url.empty()) {
      return InvalidError("Secret " + spec.secret_name + " has no DATABASE_URL");
    }
    PETREL_ASSIGN_OR_RETURN(auto inv, plugin::PsqlFromDatabaseUrl(url));
    std::cerr << "Connecting as attachment " << flags.as << " (role " << spec.role_name
              << ", database " << spec.database_name << ")\n";
    ExecPsql(inv);
  }
  std::string service = name + (flags.replica ? "-ro" : "-rw");
  auto svc = s.client->Get(resources::kService, {s.namespace_, service});
  if (!svc.ok()) {
    return svc.status().Annotate("reading Service " + service +
                                 " (the cluster may still be provisioning)");
  }
  PETREL_ASSIGN_OR_RETURN(auto address, plugin::ServiceAddress(*svc));
  PETREL_ASSIGN_OR_RETURN(SuperuserLogin login, ReadSuperuser(s, name));
  std::string database = flags.database;
  if (database.empty()) {
    database = cluster.contains("/spec/bootstrap/initdb/database"_json_pointer)
                   ? cluster["spec"]["bootstrap"]["initdb"]["database"].get<std::string>()
                   : "app";
  }
  std::cerr << "Connecting to " << service << " (" << address.first << ":" << address.second
            << ") as " << login.user << ", database " << database << "\n";
  ExecPsql(plugin::BuildPsqlInvocation(address.first, address.second, login.user, database,
                                       login.password));
}

struct AttachFlags {
  std::string app_namespace;
  std::string database;
  std::string role;
  std::string privileges = "owner";
  bool dry_run = false;
};

Status RunAttach(Session& s, const std::string& cluster, const std::string& app,
                 const AttachFlags& flags) {
  plugin::AttachRequest request;
  request.cluster = {s.namespace_, cluster};
  request.app = {flags.app_namespace.empty() ? s.namespace_ : flags.app_namespace, app};
  request.database = flags.database;
  request.role = flags.role;
  PETREL_ASSIGN_OR_RETURN(request.privileges, plugin::ParseAttachPrivileges(flags.privileges));
  PETREL_ASSIGN_OR_RETURN(Json object, plugin::BuildAttachment(request));
  if (flags.dry_run) {
    auto format = s.format == OutputFormat::kTable ? OutputFormat::kYaml : s.format;
    PETREL_ASSIGN_OR_RETURN(std::string text, plugin::RenderDocument(object, format));
    std::cout << text;
    return Status::Ok();
  }
  // The app's owner may not be allowed to read the cluster; only a clear "not found" stops us.
  auto found = GetCluster(s, cluster);
  if (!found.ok() && found.status().code() != Code::kForbidden) return found.status();
  auto created = s.client->Create(resources::kPostgresAttachment, object);
  if (!created.ok()) {
    if (created.status().code() == Code::kAlreadyExists) {
      return AlreadyExistsError("PostgresAttachment " + request.app.ToString() +
                                " already exists; detach it first (" + s.cli + " detach " + app +
                                " -n " + request.app.namespace_ + ") or pick another app name");
    }
    return created.status().Annotate("creating PostgresAttachment " + request.app.ToString());
  }
  auto spec = ParseAttachment(*created);
  std::cout << "postgresattachment.petrel.dev/" << app << " created in namespace "
            << request.app.namespace_ << "\n";
  if (spec.ok()) {
    std::cout << "Database " << spec->database_name << ", role " << spec->role_name << " ("
              << PrivilegesName(spec->privileges) << ") on cluster " << request.cluster.ToString()
              << ". DATABASE_URL will be in Secret " << request.app.namespace_ << "/"
              << spec->secret_name << " once the attachment is Ready.\n";
  }
  return Status::Ok();
}

Status RunDetach(Session& s, const std::string& app, const std::string& app_namespace) {
  ObjectKey key{app_namespace.empty() ? s.namespace_ : app_namespace, app};
  auto existing = s.client->Get(resources::kPostgresAttachment, key);
  if (!existing.ok()) {
    if (existing.status().code() == Code::kNotFound) {
      return NotFoundError("no PostgresAttachment \"" + app + "\" in namespace \"" +
                           key.namespace_ + "\"; nothing to detach");
    }
    return existing.status().Annotate("reading PostgresAttachment " + key.ToString());
  }
  auto spec = ParseAttachment(*existing);
  Status deleted = s.client->Delete(resources::kPostgresAttachment, key);
  if (!deleted.ok() && deleted.code() != Code::kNotFound) {
    return deleted.Annotate("deleting PostgresAttachment " + key.ToString());
  }
  std::cout << "postgresattachment.petrel.dev/" << app << " deleted from namespace "
            << key.namespace_ << "\n";
  if (spec.ok()) {
    std::cout << "Petrel now disables and drops role " << spec->role_name << " and deletes Secret "
              << spec->secret_name << ". Database " << spec->database_name
              << " is kept with its data; drop it by hand when you no longer need it.\n";
  }
  return Status::Ok();
}

struct CreateFlags {
  std::string preset;
  std::optional<int> replicas;
  std::optional<std::string> storage;
  std::optional<std::string> image;
  std::optional<int> postgres_version;
  bool dry_run = false;
};

// Asks on the terminal; "" keeps `fallback`.
std::string Prompt(const std::string& question, const std::string& fallback) {
  std::cerr << question << (fallback.empty() ? "" : " [" + fallback + "]") << ": " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return fallback;
  while (!answer.empty() && (answer.back() == ' ' || answer.back() == '\r')) answer.pop_back();
  return answer.empty() ? fallback : answer;
}

Status RunCreate(Session& s, std::string name, CreateFlags flags) {
  bool interactive = ::isatty(STDIN_FILENO) == 1;
  if (name.empty()) {
    if (!interactive) return InvalidError("a cluster name is required: " + s.cli + " create NAME");
    name = Prompt("Cluster name", "");
  }
  if (flags.preset.empty()) {
    if (!interactive) {
      return InvalidError(
          "--preset is required when stdin is not a terminal: "
          "--preset development (1 instance) or --preset production (3, HA)");
    }
    flags.preset =
        Prompt("Preset: development (1 instance) or production (3 instances, HA)", "development");
    if (!flags.storage) {
      flags.storage = Prompt("Storage per instance", flags.preset == "production" ? "10Gi" : "1Gi");
    }
  }
  plugin::CreateRequest request;
  request.cluster = {s.namespace_, name};
  PETREL_ASSIGN_OR_RETURN(request.preset, plugin::ParsePreset(flags.preset));
  request.replicas = flags.replicas;
  request.storage = flags.storage;
  request.image = flags.image;
  request.postgres_version = flags.postgres_version;
  PETREL_ASSIGN_OR_RETURN(Json object, plugin::BuildClusterFromPreset(request));
  if (flags.dry_run) {
    auto format = s.format == OutputFormat::kTable ? OutputFormat::kYaml : s.format;
    PETREL_ASSIGN_OR_RETURN(std::string text, plugin::RenderDocument(object, format));
    std::cout << text;
    return Status::Ok();
  }
  auto created = s.client->Create(resources::kPostgresCluster, object);
  if (!created.ok()) {
    if (created.status().code() == Code::kAlreadyExists) {
      return AlreadyExistsError("PostgresCluster " + request.cluster.ToString() +
                                " already exists; see it with: " + s.cli + " status " + name +
                                " -n " + s.namespace_);
    }
    if (created.status().code() == Code::kNotFound) {
      return GetCluster(s, name).status();  // says whether the CRD or the namespace is missing
    }
    return created.status().Annotate("creating PostgresCluster " + request.cluster.ToString());
  }
  std::cout << "postgrescluster.petrel.dev/" << name << " created in namespace " << s.namespace_
            << " (" << flags.preset << " preset)\nWatch it come up with: " << s.cli << " status "
            << name << " -n " << s.namespace_ << "\n";
  return Status::Ok();
}

// ---- snapshots (issue 7) ---------------------------------------------------------------------

Status RunSnapshotsList(Session& s, const std::string& name) {
  ListOptions options;
  options.label_selector = LabelSelector::FromMap({{"petrel.dev/cluster", name}}).ToString();
  auto list = s.client->ListAll(resources::kVolumeSnapshot, s.namespace_, options);
  if (!list.ok()) {
    if (list.status().code() == Code::kNotFound) {
      return NotFoundError(
          "the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed in this "
          "Kubernetes cluster; install the CSI external-snapshotter CRDs to take snapshots");
    }
    return list.status().Annotate("listing VolumeSnapshots");
  }
  // Snapshots outlive their cluster: list them even when it was deleted, but say when neither
  // exists (most likely a typo).
  if (list->items.empty()) {
    PETREL_RETURN_IF_ERROR(GetCluster(s, name).status());
  }
  Json summaries = plugin::SnapshotSummaries(list->items, std::chrono::system_clock::now());
  if (summaries.empty() && s.format == OutputFormat::kTable) {
    std::cerr << "No snapshots of " << name << " in namespace " << s.namespace_
              << ". Take one with `kubectl petrel snapshot " << name << "`.\n";
    return Status::Ok();
  }
  return Print(s, Json{{"cluster", name}, {"snapshots", summaries}},
               [&] { return plugin::RenderTable(plugin::SnapshotListTable(summaries)); });
}

Status RunSnapshot(Session& s, const std::string& name) {
  PETREL_RETURN_IF_ERROR(GetCluster(s, name).status());
  std::string request = FormatRfc3339Micro(std::chrono::system_clock::now());
  auto patched = s.client->Patch(resources::kPostgresCluster, {s.namespace_, name},
                                 PatchType::kMerge, plugin::SnapshotRequestPatch(request));
  if (!patched.ok()) return patched.status().Annotate("requesting a snapshot of " + name);
  Json doc = {{"cluster", name}, {"request", request}};
  return Print(s, doc, [&] {
    return "Requested a snapshot of " + name + " (petrel.dev/snapshot-request=" + request +
           ").\nFollow it with `kubectl petrel snapshots list " + name + "`.\n";
  });
}

Status RunChecks(Session& s, const std::string& name) {
  PETREL_ASSIGN_OR_RETURN(Json cluster, GetCluster(s, name));
  Json report = plugin::ChecksReport(cluster);
  return Print(s, report, [&] { return plugin::RenderChecksText(report); });
}

struct SwitchoverFlags {
  std::string to;
  bool wait = true;
  int timeout_seconds = 180;
};

// Asks for the switchover: a merge patch of status.targetPrimary, guarded by the
// resourceVersion that was validated, so that a concurrent change is re-read and re-checked.
Result<std::pair<std::string, std::string>> RequestSwitchover(Session& s, const std::string& name,
                                                              const std::string& to) {
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    PETREL_ASSIGN_OR_RETURN(Json cluster, GetCluster(s, name));
    PETREL_ASSIGN_OR_RETURN(std::string target, plugin::ChooseSwitchoverTarget(cluster, to));
    std::string from = cluster["status"].value("currentPrimary", "");
    Json patch = {{"metadata", {{"resourceVersion", meta::ResourceVersion(cluster)}}},
                  {"status", {{"targetPrimary", target}}}};
    PatchOptions options;
    options.subresource = "status";
    options.field_manager = kKubectlPluginName;
    auto patched = s.client->Patch(resources::kPostgresCluster, {s.namespace_, name},
                                   PatchType::kMerge, patch, options);
    if (patched.ok()) return std::make_pair(from, target);
    if (patched.status().code() != Code::kConflict || attempt == kAttempts) {
      return patched.status().Annotate("setting status.targetPrimary of PostgresCluster " +
                                       s.namespace_ + "/" + name);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
  }
}

Status RunSwitchover(Session& s, const std::string& name, const SwitchoverFlags& flags) {
  if (flags.timeout_seconds <= 0) return InvalidError("--timeout must be a positive number of seconds");
  PETREL_ASSIGN_OR_RETURN(auto requested, RequestSwitchover(s, name, flags.to));
  const auto& [from, target] = requested;
  Json doc = {{"cluster", s.namespace_ + "/" + name},
              {"previousPrimary", from},
              {"targetPrimary", target},
              {"currentPrimary", from},
              {"completed", false}};
  if (s.format == OutputFormat::kTable) {
    std::cout << "Switchover of " << s.namespace_ << "/" << name << " from " << from << " to "
              << target << " requested" << std::endl;
  }
  if (!flags.wait) {
    return Print(s, doc, [&] { return "Follow it with: " + s.cli + " status " + name + "\n"; });
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(flags.timeout_seconds);
  std::string last;
  while (true) {
    auto cluster = s.client->Get(resources::kPostgresCluster, {s.namespace_, name});
    if (!cluster.ok()) return cluster.status().Annotate("following the switchover of " + name);
    plugin::SwitchoverProgress progress = plugin::EvaluateSwitchover(*cluster, target);
    if (progress.state == plugin::SwitchoverState::kAborted) return UnavailableError(progress.message);
    if (progress.state == plugin::SwitchoverState::kDone) {
      doc["currentPrimary"] = target;
      doc["completed"] = true;
      return Print(s, doc, [&] {
        return "Switchover complete: " + target + " is the primary of " + s.namespace_ + "/" +
               name + " (was " + from + ")\n";
      });
    }
    if (progress.message != last && s.format == OutputFormat::kTable) {
      std::cerr << "  " << progress.message << std::endl;
    }
    last = progress.message;
    if (std::chrono::steady_clock::now() >= deadline) {
      return TimeoutError("the switchover to " + target + " has not finished after " +
                          std::to_string(flags.timeout_seconds) + " s (" + last +
                          "); it continues in the background: " + s.cli + " status " + name);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

struct LogsFlags {
  std::string instance;
  int64_t tail = -1;
  bool follow = false;
};

// Writes log data to stdout, whole lines only when several Pods share it, each prefixed with
// its Pod's name. Thread-safe: one writer per Pod.
class LogPrinter {
 public:
  explicit LogPrinter(bool prefix) : prefix_(prefix) {}

  void Write(const std::string& pod, std::string_view data) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!prefix_) {
      std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
      std::cout.flush();
      return;
    }
    std::string& pending = pending_[pod];
    pending.append(data);
    size_t start = 0;
    size_t nl;
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      std::cout << "[" << pod << "] " << std::string_view(pending).substr(start, nl + 1 - start);
      start = nl + 1;
    }
    pending.erase(0, start);
    std::cout.flush();
  }

  void Finish(const std::string& pod) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string& pending = pending_[pod];
    if (prefix_ && !pending.empty()) std::cout << "[" << pod << "] " << pending << "\n";
    pending.clear();
    std::cout.flush();
  }

 private:
  const bool prefix_;
  std::mutex mu_;
  std::map<std::string, std::string> pending_;  // guarded by mu_
};

Status ReadPodLog(Session& s, const plugin::LogSource& source, int64_t tail,
                  plugin::LogFollow follow, LogPrinter& printer) {
  std::string path = plugin::PodLogPath(s.namespace_, source, tail, follow);
  auto annotate = [&](const Status& status) {
    return status.Annotate("reading the log of Pod " + s.namespace_ + "/" + source.pod +
                           " (container " + source.container + ")");
  };
  if (source.node.empty()) {
    // kube-apiserver answers an empty log for such a Pod; say why instead.
    return annotate(UnavailableError(
        "the Pod is not scheduled to a node yet, so no kubelet runs it and it has no log; "
        "see kubectl describe pod " + source.pod + " -n " + s.namespace_));
  }
  if (follow == plugin::LogFollow::kYes) {
    // Runs until the log ends (the Pod stops) or the user interrupts; a day at most.
    Status st = s.client->RawGetStream(
        path,
        [&](std::string_view data) {
          printer.Write(source.pod, data);
          return true;
        },
        std::chrono::hours(24));
    printer.Finish(source.pod);
    return st.ok() ? st : annotate(st);
  }
  auto body = s.client->RawGet(path);
  if (!body.ok()) return annotate(body.status());
  printer.Write(source.pod, *body);
  printer.Finish(source.pod);
  return Status::Ok();
}

Status RunLogs(Session& s, const std::string& name, const LogsFlags& flags) {
  PETREL_RETURN_IF_ERROR(GetCluster(s, name).status());
  ListOptions options;
  options.label_selector = "petrel.dev/cluster=" + name;
  auto pods = s.client->ListAll(resources::kPod, s.namespace_, options);
  if (!pods.ok()) return pods.status().Annotate("listing the Pods of cluster " + name);
  PETREL_ASSIGN_OR_RETURN(auto sources, plugin::LogSources(name, pods->items, flags.instance));
  LogPrinter printer(sources.size() > 1);
  auto follow = flags.follow ? plugin::LogFollow::kYes : plugin::LogFollow::kNo;
  if (!flags.follow || sources.size() == 1) {
    Status first;
    for (const auto& source : sources) {
      Status st = ReadPodLog(s, source, flags.tail, follow, printer);
      if (!st.ok() && first.ok()) first = st;
    }
    return first;
  }
  std::vector<Status> results(sources.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < sources.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = ReadPodLog(s, sources[i], flags.tail, follow, printer); });
  }
  for (auto& t : threads) t.join();
  for (const auto& st : results) {
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

// Runs a command; a failure is printed as "error: …" and turns into exit status 1.
void Report(Status status, int* exit_code) {
  if (status.ok()) return;
  std::cerr << "error: " << status.message() << "\n";
  for (const auto& cause : status.causes()) {
    if (!cause.field.empty() && status.message().find(cause.message) == std::string::npos) {
      std::cerr << "  " << cause.field << ": " << cause.message << "\n";
    }
  }
  *exit_code = 1;
}

}  // namespace

std::vector<std::string> PluginArguments(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  if (!args.empty() && std::filesystem::path(args[0]).filename() == kKubectlPluginName) {
    args.insert(args.begin() + 1, "kubectl");
  }
  return args;
}

namespace {

// The commands, under `parent` ("kubectl", or the root in local mode).
void AddPluginCommands(CLI::App* parent, const std::shared_ptr<GlobalFlags>& flags,
                       int* exit_code) {
  CLI::App* kubectl = parent;
  // Runs `body` with an open session; every error becomes exit status 1.
  auto run = [flags, exit_code](const std::function<Status(Session&)>& body) {
    auto session = OpenSession(*flags);
    if (!session.ok()) return Report(session.status(), exit_code);
    Report(body(*session), exit_code);
  };
  auto sub = [](CLI::App* parent, const char* name, const char* help) {
    auto* cmd = parent->add_subcommand(name, help);
    cmd->fallthrough();  // global flags may follow the command, as with kubectl
    return cmd;
  };

  auto* list = sub(kubectl, "list", "List PostgresClusters in the namespace (or -A)");
  list->add_flag("-A,--all-namespaces", flags->all_namespaces, "List in all namespaces");
  list->callback([run] { run([](Session& s) { return RunList(s); }); });

  auto cluster = std::make_shared<std::string>();
  auto* status = sub(kubectl, "status",
                     "A cluster's phase, conditions, instances, Services and "
                     "attachments");
  status->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  status->callback(
      [run, cluster] { run([cluster](Session& s) { return RunStatus(s, *cluster); }); });

  auto* users = sub(kubectl, "users", "Login roles of a cluster");
  users->require_subcommand(1);
  auto* users_list = sub(users, "list", "Login roles and the attachment that owns each");
  users_list->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  users_list->callback([run, cluster] {
    run([cluster](Session& s) { return RunCatalog(s, *cluster, CatalogView::kUsers); });
  });

  auto* db = sub(kubectl, "db", "Databases of a cluster");
  db->require_subcommand(1);
  auto* db_list = sub(db, "list", "Databases and the attachment that owns each");
  db_list->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  db_list->callback([run, cluster] {
    run([cluster](Session& s) { return RunCatalog(s, *cluster, CatalogView::kDatabases); });
  });

  auto connect_flags = std::make_shared<ConnectFlags>();
  auto* connect = sub(kubectl, "connect", "Run psql against the primary (or a replica)");
  connect->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  connect->add_flag("--replica", connect_flags->replica, "Connect to a replica (<cluster>-ro)");
  connect->add_option("--database", connect_flags->database,
                      "Database (default: the cluster's bootstrap database)");
  connect->add_option("--as", connect_flags->as,
                      "Connect with this attachment's credentials (its Secret's DATABASE_URL)");
  connect->callback([run, cluster, connect_flags] {
    run([&](Session& s) { return RunConnect(s, *cluster, *connect_flags); });
  });

  auto app_name = std::make_shared<std::string>();
  auto attach_flags = std::make_shared<AttachFlags>();
  auto* attach = sub(kubectl, "attach",
                     "Attach an app to a cluster: a database, a login role and a Secret with "
                     "DATABASE_URL (creates a PostgresAttachment)");
  attach->add_option("CLUSTER", *cluster, "PostgresCluster name (in -n)")->required();
  attach->add_option("APP", *app_name, "App name: the attachment and its Secret are named after it")
      ->required();
  attach->add_option("--namespace-of-app", attach_flags->app_namespace,
                     "The app's namespace (default: the cluster's)");
  attach->add_option("--database", attach_flags->database, "Database (default: from APP)");
  attach->add_option("--role", attach_flags->role, "Login role (default: the database name)");
  attach->add_option("--privileges", attach_flags->privileges,
                     "owner (a new database), readWrite or readOnly (an existing one)");
  attach->add_flag("--dry-run", attach_flags->dry_run, "Print the object instead of creating it");
  attach->callback([run, cluster, app_name, attach_flags] {
    run([&](Session& s) { return RunAttach(s, *cluster, *app_name, *attach_flags); });
  });

  auto detach_namespace = std::make_shared<std::string>();
  auto* detach = sub(kubectl, "detach",
                     "Detach an app: deletes its PostgresAttachment (role and Secret go, the "
                     "database is kept)");
  detach->add_option("APP", *app_name, "The attachment (app) name")->required();
  detach->add_option("--namespace-of-app", *detach_namespace, "The app's namespace (default: -n)");
  detach->callback([run, app_name, detach_namespace] {
    run([&](Session& s) { return RunDetach(s, *app_name, *detach_namespace); });
  });

  auto* snapshots = sub(kubectl, "snapshots", "Volume snapshots of a cluster");
  snapshots->require_subcommand(1);
  auto* snapshots_list =
      sub(snapshots, "list", "A cluster's VolumeSnapshots: name, instance, state, size, age");
  snapshots_list->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  snapshots_list->callback(
      [run, cluster] { run([cluster](Session& s) { return RunSnapshotsList(s, *cluster); }); });
  auto* snapshot = sub(kubectl, "snapshot",
                       "Take a snapshot now (sets the petrel.dev/snapshot-request annotation)");
  snapshot->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  snapshot->callback(
      [run, cluster] { run([cluster](Session& s) { return RunSnapshot(s, *cluster); }); });

  auto create_flags = std::make_shared<CreateFlags>();
  auto* create = sub(kubectl, "create", "Create a PostgresCluster from a preset");
  create->add_option("NAME", *cluster, "Cluster name (prompted on a terminal when missing)");
  create->add_option("--preset", create_flags->preset, "development or production");
  create->add_option("--replicas", create_flags->replicas, "Instances (default from the preset)");
  create->add_option("--storage", create_flags->storage, "Volume size per instance, e.g. 10Gi");
  create->add_option("--image", create_flags->image, "Instance image");
  create->add_option("--postgres-version", create_flags->postgres_version,
                     "Postgres major version, when the image tag does not start with it");
  create->add_flag("--dry-run", create_flags->dry_run, "Print the manifest instead of creating it");
  create->callback([run, cluster, create_flags] {
    run([&](Session& s) { return RunCreate(s, *cluster, *create_flags); });
  });

  auto checks = sub(kubectl, "checks", "Health checks of a cluster's instances");
  checks->require_subcommand(1);
  auto* checks_list = sub(checks, "list", "Fly's vm, pg and role checks of every instance");
  checks_list->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  checks_list->callback(
      [run, cluster] { run([cluster](Session& s) { return RunChecks(s, *cluster); }); });

  auto switchover_flags = std::make_shared<SwitchoverFlags>();
  auto* switchover = sub(kubectl, "switchover",
                         "Make a replica the primary (sets status.targetPrimary; the controller "
                         "fences the old primary, promotes the new one and rejoins the old)");
  switchover->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  switchover->add_option("--to", switchover_flags->to,
                         "The replica to promote (default: the most advanced ready replica)");
  switchover->add_flag("--wait,!--no-wait", switchover_flags->wait,
                       "Wait until the new primary is ready (default) or return at once");
  switchover->add_option("--timeout", switchover_flags->timeout_seconds,
                         "Seconds to wait for the switchover")
      ->capture_default_str();
  switchover->callback([run, cluster, switchover_flags] {
    run([&](Session& s) { return RunSwitchover(s, *cluster, *switchover_flags); });
  });

  auto logs_flags = std::make_shared<LogsFlags>();
  auto* logs = sub(kubectl, "logs",
                   "Postgres logs of a cluster's instances (all, prefixed with the instance, or "
                   "one)");
  logs->add_option("CLUSTER", *cluster, "PostgresCluster name")->required();
  logs->add_option("INSTANCE", logs_flags->instance, "Only this instance, e.g. db-2");
  logs->add_option("--tail", logs_flags->tail, "Only the last N lines of each log");
  logs->add_flag("-f,--follow", logs_flags->follow,
                 "Keep printing new lines until interrupted or the Pod stops");
  logs->callback([run, cluster, logs_flags] {
    run([&](Session& s) { return RunLogs(s, *cluster, *logs_flags); });
  });
}

}  // namespace

void AddKubectlPluginCommands(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GlobalFlags>();
  auto* kubectl =
      app.add_subcommand("kubectl",
                         "kubectl plugin: link this binary as kubectl-petrel on PATH and run "
                         "`kubectl petrel …`");
  kubectl->require_subcommand(1);
  kubectl->add_option("--kubeconfig", flags->kubeconfig, "Path to the kubeconfig file");
  kubectl->add_option("--context", flags->context, "The kubeconfig context to use");
  kubectl->add_option("-n,--namespace", flags->namespace_,
                      "Namespace (default: the context's namespace)");
  kubectl->add_option("-o,--output", flags->output, "Output format: table (default), json, yaml");
  AddPluginCommands(kubectl, flags, exit_code);
}

void AddLocalPluginCommands(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GlobalFlags>();
  flags->mode = PluginMode::kLocal;
  const char* group = "Options of the plugin commands (status, logs, switchover, ...)";
  app.add_option("--kubeconfig", flags->kubeconfig,
                 "Kubeconfig file (default: $KUBECONFIG, else the running petrel local's "
                 "<state-dir>/kubeconfig)")
      ->group(group);
  app.add_option("--state-dir", flags->state_dir,
                 "State directory of the petrel local to talk to (default: "
                 "$XDG_STATE_HOME/petrel or ~/.local/state/petrel)")
      ->group(group);
  app.add_option("--context", flags->context, "The kubeconfig context to use")->group(group);
  app.add_option("-n,--namespace", flags->namespace_,
                 "Namespace (default: the context's, \"default\" for petrel local)")
      ->group(group);
  app.add_option("-o,--output", flags->output, "Output format: table (default), json, yaml")
      ->group(group);
  AddPluginCommands(&app, flags, exit_code);
}

}  // namespace petrel
