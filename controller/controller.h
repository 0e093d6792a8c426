// A Controller runs one Reconciler: informer events are mapped to object keys and queued; N
// worker threads take keys from the queue and reconcile them, one worker per key at a time.
// What happens after a reconcile (controller-runtime's rules):
//   error                 -> AddRateLimited (per-key exponential backoff, overall bucket)
//   Terminal error        -> Forget; no retry until the object changes again
//   requeue_after         -> Forget + AddAfter(requeue_after)
//   done                  -> Forget
// A reconciler that throws is treated as returning Internal (the exception is logged, the
// worker survives).
//
// Metrics (labelled controller=<name>): controller_runtime_reconcile_total{result},
// controller_runtime_reconcile_errors_total, controller_runtime_reconcile_time_seconds,
// controller_runtime_active_workers, controller_runtime_max_concurrent_reconciles; plus the
// workqueue's metrics under name=<name>.
//
// Lifetime: informers a controller watches hold handlers pointing at it, so stop the
// informers (or keep the controller alive) before destroying it. Thread-safety: Watch()
// before Start(); Start()/Stop() from one thread; the rest is internally synchronised.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "controller/informer.h"
#include "controller/reconciler.h"
#include "controller/workqueue.h"

namespace petrel {

// Maps an object from an informer event to the keys of the objects to reconcile.
using EventMapper = std::function<std::vector<ObjectKey>(const Json& obj)>;

// The object's own key (for the controller's primary type).
EventMapper EnqueueSelf();
// The key of the object's controller owner when that owner is of `kind` (ownerReferences
// entry with controller=true). Owners live in the object's namespace.
EventMapper EnqueueControllerOwner(std::string kind);
// Keys computed by `fn`, e.g. an attachment's spec.clusterRef -> that cluster's key.
EventMapper EnqueueMapped(std::function<std::vector<ObjectKey>(const Json&)> fn);

struct ControllerOptions {
  int workers = 1;
  RateLimiterOptions rate_limiter;
  Clock* clock = &Clock::Real();
  MetricsRegistry* metrics = &MetricsRegistry::Default();
};

class Controller {
 public:
  Controller(std::string name, std::shared_ptr<Reconciler> reconciler, ControllerOptions options);
  ~Controller();  // stops
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Queues mapper(obj) for every add, update (old and new object, so a changed owner or
  // reference reaches both) and delete reported by `informer`.
  void Watch(SharedInformer& informer, EventMapper mapper);

  // Starts the workers. Keys queued before Start() are kept and processed then.
  void Start();
  // Shuts the queue down and joins the workers; an in-flight reconcile finishes first.
  void Stop();

  const std::string& name() const { return name_; }
  WorkQueue& queue() { return queue_; }

 private:
  void Work();
  void ReconcileOne(const ObjectKey& key);

  const std::string name_;
  const std::shared_ptr<Reconciler> reconciler_;
  const ControllerOptions options_;
  WorkQueue queue_;
  std::vector<std::thread> workers_;

  CounterFamily& total_;
  Counter& errors_;
  Histogram& duration_;
  Gauge& active_;
};

}  // namespace petrel
