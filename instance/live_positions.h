// LivePositions: a replica's WAL positions read from postgres at the moment GET /status is
// answered, not at the converge loop's last tick. The controller chooses a failover candidate
// and decides that a switchover target has caught up from these numbers; a position up to a
// tick old can name a standby that lacks writes another standby acknowledged (issue 8,
// synchronous mode), and makes a switchover wait for the next tick.
//
// Only a replica's positions are refreshed (a primary's position keeps moving and nothing
// decides on it at once). When postgres does not answer within the timeout the published
// values stay as the loop last saw them.
//
// Thread-safety: Refresh may be called from any thread; calls are serialised on one connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "api/instance.h"
#include "pg/conn.h"

namespace petrel {

struct LivePositionsOptions {
  std::string socket_dir;  // postgres's unix socket directory (trust for the superuser)
  uint16_t port = kPostgresPort;
  std::chrono::milliseconds statement_timeout{200};
};

class LivePositions {
 public:
  explicit LivePositions(LivePositionsOptions options) : options_(std::move(options)) {}

  // For a running replica: received_lsn, replay_lsn and streaming as postgres reports them now.
  void Refresh(InstanceStatus* status);

 private:
  LivePositionsOptions options_;
  std::mutex mu_;
  std::optional<PgConn> conn_;  // guarded by mu_
};

}  // namespace petrel
