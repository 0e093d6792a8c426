// Pure helpers for deciding whether a replica's WAL has gone past the point where its
// primary's timeline forked (then it can only follow after pg_rewind): parsers for
// pg_controldata output and timeline history files, and the comparison itself.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace petrel {

// "Key:   value" lines of pg_controldata into a map (keys without the colon).
std::map<std::string, std::string> ParseControlData(const std::string& text);

// Where the local WAL ends as far as the control file knows: the timeline of the latest
// checkpoint, and an LSN past which there is local WAL (the later of the checkpoint record's
// start and the minimum recovery point). nullopt when the fields are missing.
struct LocalWalPosition {
  int64_t timeline = 0;
  uint64_t lsn = 0;
  bool inclusive = false;  // true: WAL exists *at* lsn (a record starts there)
};
std::optional<LocalWalPosition> PositionFromControlData(
    const std::map<std::string, std::string>& control);

// The switchpoint of `timeline` in a history file ("<tli>\t<lsn>\t<reason>" lines): where
// the history's owner branched off it. nullopt when `timeline` is not an ancestor.
std::optional<uint64_t> SwitchPoint(const std::string& history, int64_t timeline);

// True when local WAL on `local.timeline` reaches beyond where the primary (on
// `primary_timeline`, with `history` = its history file) branched off.
bool HasDiverged(const LocalWalPosition& local, int64_t primary_timeline,
                 const std::string& history);

}  // namespace petrel
