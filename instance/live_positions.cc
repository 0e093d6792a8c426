#include "instance/live_positions.h"

#include <spdlog/spdlog.h>

#include "instance/node.h"

namespace petrel {

void LivePositions::Refresh(InstanceStatus* status) {
  if (!status->running || status->role != InstanceRole::kReplica) return;
  std::lock_guard<std::mutex> l(mu_);
  // A kept connection may have died with a restarted postgres: one fresh try.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn_ || !conn_->ok()) {
      conn_.reset();
      PgConnectOptions opts;
      opts.connect_timeout = std::chrono::seconds(1);
      opts.statement_timeout = options_.statement_timeout;
      opts.application_name = "petrel-positions";
      auto c = ConnectLocalSuperuser(options_.socket_dir, options_.port, opts);
      if (!c.ok()) return;
      conn_.emplace(std::move(c).value());
    }
    auto r = conn_->Exec(
        "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), "
        "(SELECT status FROM pg_stat_wal_receiver)");
    if (!r.ok()) {
      spdlog::debug("live WAL positions: {}", r.status().ToString());
      conn_.reset();
      continue;
    }
    // Promoted since the loop's last look: the loop republishes the role; keep its numbers.
    if (r->GetOr(0, 0) != "t") return;
    status->received_lsn = r->GetOr(0, 1);
    status->replay_lsn = r->GetOr(0, 2);
    status->streaming = r->GetOr(0, 3) == "streaming";
    return;
  }
}

}  // namespace petrel
