// The few file-system effects the instance needs, with errors as Status values: atomic
// replacement of small files (spec, configuration, password files), private directories,
// and handing a tree over to the postgres user.
//
// Thread-safety: functions are thread-safe; concurrent writers of one path race (last wins).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "core/status.h"
#include "instance/process.h"

namespace petrel {

// The file's content, or nullopt when it does not exist.
Result<std::optional<std::string>> ReadFileIfExists(const std::string& path);

// Writes to a temporary file in the same directory, fsyncs, sets mode (and owner, when given),
// renames over `path` and fsyncs the directory: readers see the old or the new content.
Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode,
                       const std::optional<RunAs>& owner);

// Creates `path` (and missing parents with mode 0755) and sets its mode and owner.
Status EnsureDirectory(const std::string& path, mode_t mode, const std::optional<RunAs>& owner);

// chown -R, without following symlinks.
Status ChownTree(const std::string& path, const RunAs& owner);

bool PathExists(const std::string& path);

}  // namespace petrel
