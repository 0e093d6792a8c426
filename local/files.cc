#include "local/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace petrel {
namespace {

std::string Errno(const std::string& what, const std::filesystem::path& path) {
  return what + " " + path.string() + ": " + std::strerror(errno);
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Status WriteFileAtomically(const std::filesystem::path& path, const std::string& content,
                           std::filesystem::perms mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                 static_cast<mode_t>(mode)));
    if (fd.get() < 0) return InternalError(Errno("cannot create", tmp));
    // The umask may have narrowed the mode; the caller asked for exactly this one.
    if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
      return InternalError(Errno("cannot chmod", tmp));
    }
    size_t done = 0;
    while (done < content.size()) {
      ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Status error = InternalError(Errno("cannot write", tmp));
        ::unlink(tmp.c_str());
        return error;
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return InternalError(Errno("cannot fsync", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status error = InternalError(Errno("cannot rename onto", path));
    ::unlink(tmp.c_str());
    return error;
  }
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
  return Status::Ok();
}

Status MakeDirectory(const std::filesystem::path& dir, std::filesystem::perms mode) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InternalError("cannot create directory " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, mode, ec);
  if (ec) return InternalError("cannot set mode of " + dir.string() + ": " + ec.message());
  return Status::Ok();
}

Result<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) return NotFoundError(path.string() + " does not exist");
    return InternalError("cannot read " + path.string());
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace petrel
