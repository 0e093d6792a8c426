// `kubectl petrel snapshots list CLUSTER` and `kubectl petrel snapshot CLUSTER`, the pure part:
// the listing document and table built from a cluster's VolumeSnapshots, and the patch that
// asks the controller for an on-demand snapshot. No I/O (cli/plugin_command.cc fetches).
//
// Thread-safety: pure functions over values; safe from any thread.
#pragma once

#include <string>
#include <vector>

#include "cli/plugin/output.h"
#include "core/clock.h"
#include "core/object.h"

namespace petrel::plugin {

// One entry per VolumeSnapshot, newest first: {name, instance, ready, state (Ready |
// InProgress | Failed | Deleting), size (restoreSize, "" unknown), created (RFC 3339),
// age ("3h", relative to `now`), trigger (scheduled | requested | other), error}.
Json SnapshotSummaries(const std::vector<Json>& snapshots, SystemTime now);
// NAME INSTANCE STATE SIZE AGE TRIGGER: the table `snapshots list` prints.
Table SnapshotListTable(const Json& summaries);

// The metadata merge patch that asks for one snapshot now: the annotation
// petrel.dev/snapshot-request set to `request` (the plugin uses the current time).
Json SnapshotRequestPatch(const std::string& request);

// "45s", "12m", "5h", "3d": the age kubectl prints.
std::string ShortAge(SystemTime now, SystemTime then);

}  // namespace petrel::plugin
