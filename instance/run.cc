#include "instance/run.h"

#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/log.h"
#include "instance/api.h"
#include "instance/files.h"
#include "instance/manager.h"
#include "instance/monitor.h"
#include "net/http.h"

namespace petrel {
namespace {

bool IsIpAddress(const std::string& s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

Status ValidateInstanceOptions(const InstanceOptions& o) {
  if (o.name.empty()) return InvalidError("--name is required (the instance name, e.g. db-1)");
  if (o.pgdata.empty() || o.pgdata[0] != '/') {
    return InvalidError("--pgdata must be an absolute path (e.g. /var/lib/postgresql/data/pgdata)");
  }
  if (o.listen_address.empty()) {
    return InvalidError("--listen-address is required: the pod IP postgres listens on");
  }
  if (!IsIpAddress(o.listen_address)) {
    return InvalidError("--listen-address " + o.listen_address + " is not an IP address");
  }
  if (o.listen_address == "0.0.0.0" || o.listen_address == "::") {
    return InvalidError("--listen-address must be this instance's own IP, not the wildcard " +
                        o.listen_address);
  }
  if (o.listen_address == "127.0.0.1" && o.port == kPostgresPort) {
    return InvalidError(
        "--listen-address 127.0.0.1 with port 5432 would collide with a local "
        "Postgres; use this instance's own loopback IP (127.0.x.y) or --port");
  }
  if (!o.api_address.empty() && !IsIpAddress(o.api_address)) {
    return InvalidError("--api-address " + o.api_address + " is not an IP address");
  }
  if (o.api_token.empty()) {
    return InvalidError(
        "PETREL_API_TOKEN is not set; the instance API needs it to authorise "
        "PUT /spec");
  }
  if (o.superuser_password.empty()) {
    return InvalidError("PETREL_SUPERUSER_PASSWORD is not set (the postgres superuser password)");
  }
  if (o.replication_password.empty()) {
    return InvalidError("PETREL_REPLICATION_PASSWORD is not set (the streaming_replica password)");
  }
  std::string missing;
  for (const char* bin : {"postgres", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"}) {
    std::string path = o.bin_dir + "/" + bin;
    if (access(path.c_str(), X_OK) != 0) missing += std::string(missing.empty() ? "" : ", ") + bin;
  }
  if (!missing.empty()) {
    return InvalidError("PostgreSQL " + std::to_string(o.pg_major) + " binaries not found in " +
                        o.bin_dir + " (missing: " + missing + "); install PostgreSQL " +
                        std::to_string(o.pg_major) + " or pass --bin-dir / --pg-major");
  }
  return Status::Ok();
}

int RunInstance(InstanceOptions o) {
  if (o.bin_dir.empty()) o.bin_dir = "/usr/lib/postgresql/" + std::to_string(o.pg_major) + "/bin";
  if (o.api_address.empty()) o.api_address = o.listen_address;
  if (Status st = ValidateInstanceOptions(o); !st.ok()) {
    std::fprintf(stderr, "petrel instance: %s\n", st.message().c_str());
    return 2;
  }
  auto identity = ChildIdentity(o.run_as);
  if (!identity.ok()) {
    std::fprintf(stderr, "petrel instance: %s\n", identity.status().message().c_str());
    return 2;
  }

  // Only the sigwait below sees these; every thread created from here on inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ManagerOptions mo;
  mo.node.name = o.name;
  mo.node.pgdata = o.pgdata;
  mo.node.listen_address = o.listen_address;
  mo.node.port = o.port;
  mo.node.bin_dir = o.bin_dir;
  mo.node.run_as = *identity;
  mo.node.superuser_password = o.superuser_password;
  mo.node.replication_password = o.replication_password;
  mo.ask_peer = HttpPeerAsker(o.api_token);
  InstanceManager manager(mo, Clock::Real());

  auto server = HttpServer::Listen(o.api_address, o.api_port, 4);
  if (!server.ok()) {
    std::fprintf(stderr, "petrel instance: instance API: %s\n", server.status().message().c_str());
    return 1;
  }
  MonitorOptions monitor_options;
  monitor_options.name = o.name;
  monitor_options.cluster = o.cluster;
  monitor_options.volume_path = std::filesystem::path(o.pgdata).parent_path().string();
  monitor_options.socket_dir = manager.socket_dir();
  monitor_options.port = o.port;
  InstanceMonitor monitor(
      monitor_options,
      {[&manager] { return manager.CurrentSpec(); }, [&manager] { return manager.GetStatus(); }},
      Clock::Real());
  LivePositions positions({manager.socket_dir(), o.port});
  InstanceApi api(manager, o.api_token);
  api.SetMonitor(&monitor);
  api.SetLivePositions(&positions);
  api.Register(**server);
  std::unique_ptr<HttpServer> metrics_server;
  if (o.metrics_port != 0) {
    auto listening = HttpServer::Listen(o.api_address, o.metrics_port, 1);
    if (!listening.ok()) {
      std::fprintf(stderr, "petrel instance: metrics port: %s\n",
                   listening.status().message().c_str());
      return 1;
    }
    metrics_server = std::move(listening).value();
    metrics_server->Handle("/metrics",
                           [&monitor](const HttpRequest& r) { return ServeMetrics(&monitor, r); });
  }

  if (Status st = manager.Start(); !st.ok()) {
    std::fprintf(stderr, "petrel instance: %s\n", st.message().c_str());
    return 1;
  }
  monitor.Start();
  (*server)->Start();
  if (metrics_server) metrics_server->Start();
  spdlog::info("instance {} of cluster {}: API on {}:{}, postgres on {}:{}, data in {}{}", o.name,
               o.cluster, o.api_address, (*server)->port(), o.listen_address, o.port, o.pgdata,
               *identity ? ", running postgres as " + o.run_as : "");

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}; shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  if (metrics_server) metrics_server->Stop();
  monitor.Stop();
  manager.Stop();
  (*server)->Stop();
  spdlog::info("postgres stopped; exiting");
  return 0;
}

}  // namespace petrel
