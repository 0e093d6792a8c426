// Pure builders of the configuration Petrel owns inside PGDATA:
//   petrel.conf  - every server parameter Petrel sets, included by the last line of
//                  postgresql.conf (`include 'petrel.conf'`), so it overrides initdb's and the
//                  primary's copied postgresql.conf. postgresql.auto.conf (ALTER SYSTEM) is
//                  still read after it; spec.parameters is the supported way to change settings.
//   pg_hba.conf  - written whole: spec.pg_hba lines first, then Petrel's rules.
// No I/O here; the converge loop compares these strings with the files and rewrites on change.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "api/instance.h"

namespace petrel {

inline constexpr const char* kPetrelConfFile = "petrel.conf";
inline constexpr const char* kIncludeLine = "include 'petrel.conf'";

// Facts about this instance that are not in the spec (they come from flags).
struct ConfigInputs {
  std::string name;            // instance name; also the replica's application_name
  std::string listen_address;  // pod IP; never 0.0.0.0 or 127.0.0.1:5432 by default
  uint16_t port = kPostgresPort;
  std::string socket_dir;  // private unix socket directory (0700)
  std::string passfile;    // pgpass file holding the streaming_replica password
};

// Fly's auto-tuning (research-notes §b.8) from the memory limit; empty when unknown (0).
std::map<std::string, std::string> MemoryDefaults(int64_t memory_limit_bytes);

// The conninfo a replica streams with; the password stays in `passfile`.
std::string PrimaryConnInfo(const Endpoint& primary, const ConfigInputs& in);

// Every parameter petrel.conf sets: static defaults < memory defaults < spec.parameters <
// Petrel-managed settings (which the spec validation keeps out of spec.parameters anyway).
std::map<std::string, std::string> DesiredParameters(const InstanceSpec& spec,
                                                     const ConfigInputs& in);

// `name = 'value'` lines with postgresql.conf quoting.
std::string RenderConf(const std::map<std::string, std::string>& parameters);

std::string RenderHba(const InstanceSpec& spec);

// postgresql.conf with the include of petrel.conf as its last effective line (appended when
// missing or not last; earlier copies are kept, they are harmless duplicates).
std::string WithPetrelInclude(const std::string& postgresql_conf);

}  // namespace petrel
