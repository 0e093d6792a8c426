#include "instance/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace petrel {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return UnavailableError(what + " " + path + ": " + std::strerror(errno));
}

// Closes a file descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<std::optional<std::string>> ReadFileIfExists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT || !PathExists(path)) return std::optional<std::string>();
    return ErrnoStatus("reading", path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::optional<std::string>(ss.str());
}

Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode,
                       const std::optional<RunAs>& owner) {
  std::filesystem::path p(path);
  std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
  {
    Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (fd.get() < 0) return ErrnoStatus("creating", tmp);
    if (fchmod(fd.get(), mode) != 0) return ErrnoStatus("chmod", tmp);
    if (owner && fchown(fd.get(), owner->uid, owner->gid) != 0) return ErrnoStatus("chown", tmp);
    size_t off = 0;
    while (off < content.size()) {
      ssize_t w = write(fd.get(), content.data() + off, content.size() - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("writing", tmp);
      }
      off += static_cast<size_t>(w);
    }
    if (fsync(fd.get()) != 0) return ErrnoStatus("fsync", tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("renaming onto", path);
  Fd dir(open(p.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) fsync(dir.get());
  return Status::Ok();
}

Status EnsureDirectory(const std::string& path, mode_t mode, const std::optional<RunAs>& owner) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return UnavailableError("creating directory " + path + ": " + ec.message());
  if (chmod(path.c_str(), mode) != 0) return ErrnoStatus("chmod", path);
  if (owner && chown(path.c_str(), owner->uid, owner->gid) != 0) return ErrnoStatus("chown", path);
  return Status::Ok();
}

Status ChownTree(const std::string& path, const RunAs& owner) {
  if (lchown(path.c_str(), owner.uid, owner.gid) != 0) return ErrnoStatus("chown", path);
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (lchown(it->path().c_str(), owner.uid, owner.gid) != 0) {
      return ErrnoStatus("chown", it->path().string());
    }
  }
  if (ec) return UnavailableError("walking " + path + ": " + ec.message());
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace petrel
