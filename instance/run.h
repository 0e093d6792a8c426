// `petrel instance` as a whole: validates flags and environment, prepares the volume, serves
// the instance API, runs the converge loop, and on SIGTERM/SIGINT shuts postgres down fast
// and returns 0.
//
// Thread-safety: RunInstance is called once, from main, before any other thread exists (it
// blocks SIGTERM/SIGINT process-wide so that only its sigwait sees them).
#pragma once

#include <cstdint>
#include <string>

#include "api/instance.h"
#include "core/status.h"

namespace petrel {

struct InstanceOptions {
  std::string name;
  std::string cluster;
  std::string pgdata;
  std::string listen_address;
  uint16_t port = kPostgresPort;
  std::string api_address;  // defaults to listen_address
  uint16_t api_port = kInstanceApiPort;
  uint16_t metrics_port = kMetricsPort;  // /metrics also here, on api_address; 0 = only the API
  int pg_major = 15;
  std::string bin_dir;  // defaults to /usr/lib/postgresql/<pg_major>/bin
  std::string run_as = "postgres";
  // From the environment, never from flags (command lines are visible to every user).
  std::string superuser_password;
  std::string replication_password;
  std::string api_token;
};

// Checks the options; the message says which flag or variable to fix.
Status ValidateInstanceOptions(const InstanceOptions& options);

// Runs until SIGTERM/SIGINT. Returns the process exit code (0 after a clean shutdown).
int RunInstance(InstanceOptions options);

}  // namespace petrel
