// A throwaway PostgreSQL 15 server for e2e tests: initdb into a temp dir, listen on a free
// port on 127.0.0.1 only (plus a Unix socket in the temp dir), superuser `postgres` with a
// password and SCRAM authentication for TCP. When the test runs as root, every postgres
// process runs as the `postgres` system user. Stopped (immediate) and removed on destruction.
// Thread-safety: one owner.
#pragma once

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace petrel::testing_pg {

inline constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";

// Runs a shell command (test-controlled arguments only); returns its exit status.
inline int Run(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

class PostgresServer {
 public:
  PostgresServer() = default;
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  ~PostgresServer() { Stop(); }

  // Returns "" on success, else what failed.
  std::string Start(const std::string& superuser_password) {
    password_ = superuser_password;
    char tmpl[] = "/tmp/petrel-pg-XXXXXX";
    if (!::mkdtemp(tmpl)) return "mkdtemp failed";
    dir_ = tmpl;
    as_ = "";
    if (::geteuid() == 0) {
      passwd* pw = ::getpwnam("postgres");
      if (!pw) return "running as root but there is no postgres user";
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) return "chown failed";
      as_ = "runuser -u postgres -- ";
    }
    const std::string pwfile = dir_ + "/pw";
    {
      std::ofstream f(pwfile);
      f << password_ << "\n";
    }
    if (!as_.empty()) Run("chown postgres " + pwfile);
    std::string initdb = as_ + kPgBin + "/initdb -D " + dir_ +
                         "/data -U postgres --auth-local=trust --auth-host=scram-sha-256 "
                         "--pwfile=" +
                         pwfile + " -E UTF8 --locale=C.UTF-8 >" + dir_ + "/initdb.log 2>&1";
    if (Run(initdb) != 0) return "initdb failed; see " + dir_ + "/initdb.log";
    std::filesystem::remove(pwfile);
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreeLoopbackPort();
      std::string start = as_ + kPgBin + "/pg_ctl -D " + dir_ + "/data -l " + dir_ +
                          "/server.log -w -t 30 -o \"-c listen_addresses=127.0.0.1 -p " +
                          std::to_string(port_) + " -c unix_socket_directories=" + dir_ +
                          " -c fsync=off -c max_connections=50\" start >/dev/null 2>&1";
      if (Run(start) == 0) {
        started_ = true;
        return "";
      }
    }
    return "pg_ctl start failed; see " + dir_ + "/server.log";
  }

  void Stop() {
    if (started_) {
      Run(as_ + kPgBin + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop >/dev/null 2>&1");
      started_ = false;
    }
    if (!dir_.empty() && std::getenv("PETREL_KEEP_PG") == nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  const std::string& password() const { return password_; }
  const std::string& dir() const { return dir_; }
  // conninfo for the superuser (password passed separately).
  std::string SuperuserConnInfo(const std::string& dbname = "postgres") const {
    return "host=" + host_ + " port=" + std::to_string(port_) + " user=postgres dbname=" + dbname;
  }

 private:
  std::string dir_;
  std::string as_;
  std::string host_ = "127.0.0.1";
  std::string password_;
  int port_ = -1;
  bool started_ = false;
};

}  // namespace petrel::testing_pg
