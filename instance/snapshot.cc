#include "instance/snapshot.h"

#include <filesystem>
#include <sstream>

#include "core/log.h"
#include "instance/files.h"
#include "instance/node.h"
#include "pg/conn.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

// Settings a copy must not inherit from its source through postgresql.auto.conf.
bool IsRecoverySetting(const std::string& key) {
  return key == "primary_conninfo" || key == "primary_slot_name" || key == "restore_command" ||
         key == "archive_cleanup_command" || key == "recovery_end_command" ||
         key.rfind("recovery_target", 0) == 0;
}

std::string Trimmed(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::string Tail(const std::string& output, size_t max = 600) {
  std::string t = output.size() > max ? "..." + output.substr(output.size() - max) : output;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

// Removes what a failed pg_basebackup left, so the directory can be used again.
void EmptyDirectory(const std::string& dir, bool remove_itself) {
  std::error_code ec;
  if (remove_itself) {
    fs::remove_all(dir, ec);
    return;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) fs::remove_all(entry.path(), ec);
}

}  // namespace

Status CheckSnapshotDir(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') {
    return InvalidError("dir \"" + dir + "\" is not an absolute path; send the directory to copy "
                        "the snapshot into as an absolute path");
  }
  for (const auto& part : fs::path(dir)) {
    if (part == "..") return InvalidError("dir " + dir + " contains \"..\"; send a plain path");
  }
  std::error_code ec;
  auto st = fs::symlink_status(dir, ec);
  if (ec || !fs::exists(st)) return Status::Ok();
  if (!fs::is_directory(st)) return ConflictError("dir " + dir + " exists and is not a directory");
  if (!fs::is_empty(dir, ec) || ec) {
    return ConflictError("dir " + dir + " is not empty; a snapshot is only written into an empty "
                         "or new directory");
  }
  return Status::Ok();
}

Result<ManifestWalEnd> ParseBackupManifestWalEnd(const std::string& manifest) {
  Json j = Json::parse(manifest, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidError("backup_manifest is not JSON");
  }
  auto ranges = j.find("WAL-Ranges");
  if (ranges == j.end() || !ranges->is_array() || ranges->empty()) {
    return InvalidError("backup_manifest has no WAL-Ranges");
  }
  const Json& last = ranges->back();
  if (!last.is_object() || !last.contains("End-LSN") || !last["End-LSN"].is_string() ||
      !last.contains("Timeline") || !last["Timeline"].is_number_integer()) {
    return InvalidError("backup_manifest's last WAL range lacks End-LSN or Timeline");
  }
  ManifestWalEnd end{last["End-LSN"].get<std::string>(), last["Timeline"].get<int64_t>()};
  uint64_t parsed = 0;
  if (!ParseLsn(end.lsn, &parsed)) {
    return InvalidError("backup_manifest's End-LSN \"" + end.lsn + "\" is not an LSN");
  }
  return end;
}

std::string StripRecoverySettings(const std::string& auto_conf) {
  std::istringstream in(auto_conf);
  std::string out, line;
  while (std::getline(in, line)) {
    std::string t = Trimmed(line);
    if (!t.empty() && t[0] != '#') {
      size_t end = t.find_first_of(" \t=");
      if (IsRecoverySetting(t.substr(0, end))) continue;
    }
    out += line + "\n";
  }
  return out;
}

Result<int64_t> TreeSize(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) total += static_cast<int64_t>(it->file_size(fec));
  }
  if (ec) return UnavailableError("measuring " + dir + ": " + ec.message());
  return total;
}

Status CopyTree(const std::string& from, const std::string& to, const std::atomic<bool>* cancel) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return NotFoundError(from + " is not a directory");
  if (fs::exists(fs::symlink_status(to, ec))) return ConflictError(to + " already exists");
  fs::create_directory(to, from, ec);
  if (ec) return UnavailableError("creating " + to + ": " + ec.message());
  for (auto it = fs::recursive_directory_iterator(from, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (cancel && cancel->load()) return CancelledError("copying " + from + " was cancelled");
    fs::path target = fs::path(to) / it->path().lexically_relative(from);
    std::error_code cec;
    auto st = it->symlink_status(cec);
    if (fs::is_symlink(st)) {
      fs::path link = fs::read_symlink(it->path(), cec);
      if (!cec) fs::create_symlink(link, target, cec);
    } else if (fs::is_directory(st)) {
      fs::create_directory(target, it->path(), cec);
    } else if (fs::is_regular_file(st)) {
      fs::copy_file(it->path(), target, cec);
    }
    // Sockets, FIFOs and devices have no place in a data directory; they are skipped.
    if (cec) return UnavailableError("copying " + it->path().string() + ": " + cec.message());
  }
  if (ec) return UnavailableError("walking " + from + ": " + ec.message());
  return Status::Ok();
}

Result<SnapshotInfo> SnapshotTaker::Take(const SnapshotRequest& request,
                                         const std::atomic<bool>* cancel) {
  std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
  if (!busy.owns_lock()) {
    return ConflictError("a snapshot of this instance is being taken; try again when it is done");
  }
  const std::string dir = fs::path(request.dir).lexically_normal().string();
  PETREL_RETURN_IF_ERROR(CheckSnapshotDir(request.dir));

  SnapshotInfo info;
  {
    PgConnectOptions opts;
    opts.connect_timeout = std::chrono::seconds(5);
    opts.statement_timeout = std::chrono::milliseconds(10000);
    opts.application_name = "petrel-instance";
    auto conn = ConnectLocalSuperuser(source_.socket_dir, source_.port, opts);
    if (!conn.ok()) {
      return ConflictError("postgres is not accepting connections; a snapshot needs it running: " +
                           conn.status().message());
    }
    PETREL_ASSIGN_OR_RETURN(
        PgRows r, conn->Exec("SELECT current_setting('server_version'), "
                             "current_setting('server_version_num')::int / 10000, "
                             "(SELECT system_identifier FROM pg_control_system())"));
    info.pg_version = r.GetOr(0, 0);
    info.pg_major = std::atoi(r.GetOr(0, 1, "0").c_str());
    info.system_identifier = r.GetOr(0, 2);
  }

  const bool created = !PathExists(dir);
  PETREL_RETURN_IF_ERROR(EnsureDirectory(dir, 0700, source_.run_as));
  Command c;
  c.argv = {source_.bin_dir + "/pg_basebackup",
            "-D", dir,
            "-h", source_.host,
            "-p", std::to_string(source_.port),
            "-U", kReplicationUser,
            "-w", "-X", "stream", "-c", "fast",
            "--label=petrel snapshot"};
  c.env = {"PATH=" + source_.bin_dir + ":/usr/local/bin:/usr/bin:/bin",
           "LC_ALL=C",
           "LANG=C",
           "HOME=" + source_.home,
           "PGPASSFILE=" + source_.passfile,
           "PGCONNECT_TIMEOUT=10",
           "PGAPPNAME=" + source_.name + "-snapshot"};
  c.run_as = source_.run_as;
  c.cwd = source_.home;
  spdlog::info("taking a snapshot into {} (pg_basebackup, fast checkpoint)", dir);
  auto result = RunCommand(c, source_.timeout, cancel);
  if (!result.ok() || !result->ok()) {
    EmptyDirectory(dir, created);
    if (!result.ok()) return result.status().Annotate("pg_basebackup");
    std::string how = result->signal ? "killed by signal " + std::to_string(result->signal)
                                     : "exit code " + std::to_string(result->exit_code);
    return UnavailableError("pg_basebackup failed (" + how + "): " + Redact(Tail(result->output)));
  }

  PETREL_ASSIGN_OR_RETURN(auto manifest, ReadFileIfExists(dir + "/backup_manifest"));
  if (!manifest) return InternalError("pg_basebackup wrote no backup_manifest in " + dir);
  PETREL_ASSIGN_OR_RETURN(ManifestWalEnd end, ParseBackupManifestWalEnd(*manifest));
  info.lsn = end.lsn;
  info.timeline = end.timeline;
  PETREL_ASSIGN_OR_RETURN(info.size_bytes, TreeSize(dir));
  spdlog::info("snapshot in {} complete: {} bytes, end LSN {} on timeline {}", dir,
               info.size_bytes, info.lsn, info.timeline);
  return info;
}

}  // namespace petrel
