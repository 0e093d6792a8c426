#include "bench/failover/writer.h"

#include <algorithm>

namespace petrel {
namespace {

Result<DeadlineConn> Open(const PgTarget& t, const DeadlineConnOptions& options) {
  return DeadlineConn::Connect(t.host, t.port, t.user, t.password, t.dbname, options);
}

// `table` is only ever one of our own constant names; still, it is quoted by the server.
std::string Quoted(const std::string& table) { return "\"" + table + "\""; }

}  // namespace

Status CreateWritesTable(const PgTarget& target, const std::string& table) {
  DeadlineConnOptions options;
  options.connect_timeout = std::chrono::seconds(5);
  options.statement_timeout = std::chrono::seconds(10);
  PETREL_ASSIGN_OR_RETURN(DeadlineConn conn, Open(target, options));
  auto r = conn.Exec("CREATE TABLE IF NOT EXISTS " + Quoted(table) +
                     " (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())");
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::vector<int64_t>> ReadWrittenIds(const PgTarget& target, const std::string& table) {
  DeadlineConnOptions options;
  options.connect_timeout = std::chrono::seconds(5);
  options.statement_timeout = std::chrono::seconds(10);
  PETREL_ASSIGN_OR_RETURN(DeadlineConn conn, Open(target, options));
  PETREL_ASSIGN_OR_RETURN(PgRows rows, conn.Exec("SELECT id FROM " + Quoted(table)));
  std::vector<int64_t> ids;
  ids.reserve(rows.size());
  for (int i = 0; i < rows.size(); ++i) ids.push_back(std::stoll(rows.GetOr(i, 0, "0")));
  return ids;
}

std::vector<int64_t> LostIds(std::vector<int64_t> acknowledged, std::vector<int64_t> present) {
  std::sort(acknowledged.begin(), acknowledged.end());
  std::sort(present.begin(), present.end());
  std::vector<int64_t> lost;
  std::set_difference(acknowledged.begin(), acknowledged.end(), present.begin(), present.end(),
                      std::back_inserter(lost));
  return lost;
}

FailoverWriter::FailoverWriter(WriterOptions options) : options_(std::move(options)) {}

FailoverWriter::~FailoverWriter() { Stop(); }

void FailoverWriter::Start() {
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
}

void FailoverWriter::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void FailoverWriter::Record(int64_t id, bool acknowledged, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  attempts_.push_back({id, std::chrono::steady_clock::now(), acknowledged});
  if (acknowledged) ++acknowledged_count_;
  if (!error.empty()) last_error_ = error;
}

void FailoverWriter::Run() {
  const std::string insert = "INSERT INTO " + Quoted(options_.table) + " (id) VALUES ($1)";
  std::optional<DeadlineConn> conn;
  int64_t next_id = options_.first_id;
  while (!stopping_) {
    if (!conn || !conn->ok()) {
      conn.reset();
      auto c = Open(options_.target, options_.conn);
      if (!c.ok()) {
        Record(0, false, c.status().ToString());
        std::this_thread::sleep_for(options_.retry_interval);
        continue;
      }
      conn.emplace(std::move(c).value());
    }
    int64_t id = next_id;
    next_id += options_.id_step;
    auto r = conn->Exec(insert, {std::to_string(id)});
    Record(id, r.ok(), r.ok() ? "" : r.status().ToString());
    if (!r.ok()) {
      conn.reset();  // a fresh session after any error: it may be on a replaced primary
      std::this_thread::sleep_for(options_.retry_interval);
    }
  }
}

std::vector<WriteAttempt> FailoverWriter::Attempts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attempts_;
}

std::vector<int64_t> FailoverWriter::Acknowledged() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> ids;
  for (const WriteAttempt& a : attempts_) {
    if (a.acknowledged) ids.push_back(a.id);
  }
  return ids;
}

std::optional<SteadyTime> FailoverWriter::LastSuccessBefore(SteadyTime t) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<SteadyTime> out;
  for (const WriteAttempt& a : attempts_) {
    if (a.acknowledged && a.at <= t) out = a.at;
  }
  return out;
}

std::optional<SteadyTime> FailoverWriter::FirstSuccessAfter(SteadyTime t) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const WriteAttempt& a : attempts_) {
    if (a.acknowledged && a.at > t) return a.at;
  }
  return std::nullopt;
}

std::string FailoverWriter::LastError() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

}  // namespace petrel
