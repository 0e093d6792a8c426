#include "cli/instance_command.h"

#include <cstdlib>
#include <memory>

#include "core/log.h"
#include "instance/run.h"

namespace petrel {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

void AddInstanceCommand(CLI::App& app) {
  struct Flags {
    InstanceOptions options;
    std::string log_format = "text";
    std::string log_level = "info";
  };
  auto flags = std::make_shared<Flags>();
  InstanceOptions& o = flags->options;
  auto* cmd = app.add_subcommand(
      "instance",
      "Run one Postgres instance: bootstrap, configure and supervise it, and serve the instance "
      "API.\nSecrets come from the environment: PETREL_SUPERUSER_PASSWORD, "
      "PETREL_REPLICATION_PASSWORD, PETREL_API_TOKEN.");
  cmd->add_option("--name", o.name, "Instance name (e.g. db-1)")->required();
  cmd->add_option("--cluster", o.cluster, "Cluster name (e.g. db)");
  cmd->add_option("--pgdata", o.pgdata,
                  "Data directory; its parent is the volume (Petrel's state goes in "
                  "<parent>/petrel)")
      ->required();
  cmd->add_option("--listen-address", o.listen_address,
                  "IP postgres listens on (the pod IP; in local mode a loopback 127.0.x.y)")
      ->required();
  cmd->add_option("--port", o.port, "Postgres port")->capture_default_str();
  cmd->add_option("--api-address", o.api_address,
                  "IP of the instance API (default: --listen-address)");
  cmd->add_option("--api-port", o.api_port, "Instance API port")->capture_default_str();
  cmd->add_option("--metrics-port", o.metrics_port,
                  "Port serving /metrics on the API address (0: only on the API port)")
      ->capture_default_str();
  cmd->add_option("--pg-major", o.pg_major, "PostgreSQL major version")->capture_default_str();
  cmd->add_option("--bin-dir", o.bin_dir,
                  "PostgreSQL binaries (default /usr/lib/postgresql/<pg-major>/bin)");
  cmd->add_option("--run-as", o.run_as,
                  "System user postgres runs as when petrel instance runs as root")
      ->capture_default_str();
  cmd->add_option("--log-format", flags->log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn or error")
      ->capture_default_str();
  cmd->callback([flags] {
    InitLogging(flags->log_format == "json" ? LogFormat::kJson : LogFormat::kText, flags->log_level,
                "instance");
    InstanceOptions options = flags->options;
    options.superuser_password = Env("PETREL_SUPERUSER_PASSWORD");
    options.replication_password = Env("PETREL_REPLICATION_PASSWORD");
    options.api_token = Env("PETREL_API_TOKEN");
    std::exit(RunInstance(std::move(options)));
  });
}

}  // namespace petrel
