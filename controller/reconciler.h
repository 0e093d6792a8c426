// The reconciler contract (controller-runtime's reconcile.Reconciler). A reconciler is
// level-triggered: given a key it observes the world, converges it one step, and says when
// to look again. It must be idempotent and safe to re-run after a crash at any point.
//
// Returning an error requeues the key with per-item exponential backoff; returning
// requeue_after requeues it after that delay (and resets the backoff); returning neither
// means "done until something changes".
#pragma once

#include <chrono>
#include <optional>

#include "core/status.h"
#include "core/types.h"

namespace petrel {

struct ReconcileResult {
  std::optional<std::chrono::milliseconds> requeue_after;

  static ReconcileResult Done() { return {}; }
  static ReconcileResult RequeueAfter(std::chrono::milliseconds d) { return {d}; }
};

class Reconciler {
 public:
  virtual ~Reconciler() = default;
  // Called from worker threads; never concurrently for the same key.
  virtual Result<ReconcileResult> Reconcile(const ObjectKey& key) = 0;
  // Called by Controller::Stop() once its workers have finished (possibly more than once):
  // stop background work that feeds the controller's queue, which is destroyed soon after.
  virtual void Stopped() {}
};

}  // namespace petrel
