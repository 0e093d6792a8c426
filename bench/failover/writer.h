// FailoverWriter: the client of the failover benchmark and the HA end-to-end tests. It writes
// sequential integers through one endpoint (the leader Service) in autocommit, one INSERT per
// id, and records when each attempt succeeded or failed. On any error it drops the session
// and reconnects every `retry_interval` (50 ms): never more often, never less, so that the
// first success after a failover is seen within one interval of being possible.
//
// Each id is tried once: a failed or timed-out INSERT is never retried, so "acknowledged" is
// exactly the set of ids whose COMMIT returned success to this client. A timed-out INSERT may
// still have committed (it is unacknowledged, not absent); only acknowledged ids that are
// missing afterwards count as lost.
//
// Several writers may share one table: writer k of n writes ids k, k+n, k+2n, ...
//
// Thread-safety: Start/Stop from one thread; the accessors are safe from any thread while it
// runs (they copy under a lock).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/failover/deadline_conn.h"
#include "core/status.h"

namespace petrel {

using SteadyTime = std::chrono::steady_clock::time_point;

// Where and as whom to connect.
struct PgTarget {
  std::string host;
  uint16_t port = 5432;
  std::string user = "postgres";
  std::string password;
  std::string dbname = "postgres";
};

struct WriterOptions {
  PgTarget target;
  std::string table = "failover_writes";
  int64_t first_id = 1;
  int64_t id_step = 1;
  std::chrono::milliseconds retry_interval{50};
  DeadlineConnOptions conn;  // client-side bounds on connect and on each INSERT
};

struct WriteAttempt {
  int64_t id = 0;  // 0 for a failed connect (no id was used)
  SteadyTime at;   // when the outcome was known
  bool acknowledged = false;
};

// Creates `table` (id bigint primary key, written_at timestamptz) if missing.
Status CreateWritesTable(const PgTarget& target, const std::string& table);

// The ids present in `table`, read through `target` (bounded by a 10 s statement deadline).
Result<std::vector<int64_t>> ReadWrittenIds(const PgTarget& target, const std::string& table);

class FailoverWriter {
 public:
  explicit FailoverWriter(WriterOptions options);
  ~FailoverWriter();  // stops the thread
  FailoverWriter(const FailoverWriter&) = delete;
  FailoverWriter& operator=(const FailoverWriter&) = delete;

  void Start();
  void Stop();

  std::vector<WriteAttempt> Attempts() const;
  std::vector<int64_t> Acknowledged() const;
  int64_t acknowledged_count() const { return acknowledged_count_.load(); }
  // The last acknowledged write at or before `t`, and the first one after `t`.
  std::optional<SteadyTime> LastSuccessBefore(SteadyTime t) const;
  std::optional<SteadyTime> FirstSuccessAfter(SteadyTime t) const;
  // The last error message seen (for diagnostics), "" if none.
  std::string LastError() const;

 private:
  void Run();
  void Record(int64_t id, bool acknowledged, const std::string& error);

  const WriterOptions options_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> acknowledged_count_{0};

  mutable std::mutex mu_;
  std::vector<WriteAttempt> attempts_;  // guarded by mu_
  std::string last_error_;              // guarded by mu_
};

// Acknowledged ids absent from `present` (both need not be sorted).
std::vector<int64_t> LostIds(std::vector<int64_t> acknowledged, std::vector<int64_t> present);

}  // namespace petrel
