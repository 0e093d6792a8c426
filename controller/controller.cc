#include "controller/controller.h"

#include <exception>

#include <spdlog/spdlog.h>

namespace petrel {

EventMapper EnqueueSelf() {
  return [](const Json& obj) { return std::vector<ObjectKey>{meta::Key(obj)}; };
}

EventMapper EnqueueControllerOwner(std::string kind) {
  return [kind = std::move(kind)](const Json& obj) {
    auto owner = meta::ControllerOf(obj);
    if (!owner || owner->kind != kind || owner->name.empty()) return std::vector<ObjectKey>{};
    return std::vector<ObjectKey>{ObjectKey{meta::Namespace(obj), owner->name}};
  };
}

EventMapper EnqueueMapped(std::function<std::vector<ObjectKey>(const Json&)> fn) {
  return fn;
}

Controller::Controller(std::string name, std::shared_ptr<Reconciler> reconciler,
                       ControllerOptions options)
    : name_(std::move(name)),
      reconciler_(std::move(reconciler)),
      options_(options),
      queue_(WorkQueueOptions{name_, options.clock, options.metrics, options.rate_limiter}),
      total_(options.metrics->Counter("controller_runtime_reconcile_total",
                                      "Reconciliations per controller and result "
                                      "(success, error, requeue_after).",
                                      {"controller", "result"})),
      errors_(options.metrics
                  ->Counter("controller_runtime_reconcile_errors_total",
                            "Reconciliations that returned an error.", {"controller"})
                  .WithLabels({name_})),
      duration_(options.metrics
                    ->Histogram("controller_runtime_reconcile_time_seconds",
                                "Seconds one reconciliation takes.", {"controller"},
                                DefaultLatencyBuckets())
                    .WithLabels({name_})),
      active_(options.metrics
                  ->Gauge("controller_runtime_active_workers",
                          "Workers currently running a reconciliation.", {"controller"})
                  .WithLabels({name_})) {
  options.metrics
      ->Gauge("controller_runtime_max_concurrent_reconciles", "Worker threads per controller.",
              {"controller"})
      .WithLabels({name_})
      .Set(options.workers);
  for (const char* result : {"success", "error", "requeue_after"}) {
    total_.WithLabels({name_, result});  // expose zeros from the start
  }
}

Controller::~Controller() { Stop(); }

void Controller::Watch(SharedInformer& informer, EventMapper mapper) {
  auto enqueue = [this, mapper](const ObjectPtr& obj) {
    for (const ObjectKey& key : mapper(*obj)) queue_.Add(key);
  };
  informer.AddEventHandler(EventHandler{
      enqueue,
      [enqueue](const ObjectPtr& old_obj, const ObjectPtr& new_obj) {
        enqueue(old_obj);
        enqueue(new_obj);
      },
      enqueue});
}

void Controller::Start() {
  if (!workers_.empty()) return;
  spdlog::info("starting controller {} with {} workers", name_, options_.workers);
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

void Controller::Stop() {
  queue_.ShutDown();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
  reconciler_->Stopped();
}

void Controller::Work() {
  ObjectKey key;
  while (queue_.Get(&key)) {
    ReconcileOne(key);
    queue_.Done(key);
  }
}

void Controller::ReconcileOne(const ObjectKey& key) {
  active_.Inc();
  SteadyTime start = options_.clock->Now();
  Result<ReconcileResult> result = InternalError("reconciler did not return");
  try {
    result = reconciler_->Reconcile(key);
  } catch (const std::exception& e) {
    result = InternalError(std::string("reconciler threw: ") + e.what());
  }
  duration_.Observe(std::chrono::duration<double>(options_.clock->Now() - start).count());
  active_.Dec();

  if (!result.ok()) {
    const Status& s = result.status();
    errors_.Inc();
    total_.WithLabels({name_, "error"}).Inc();
    if (s.code() == Code::kTerminal) {
      spdlog::error("{}: reconciling {} failed and will not be retried until it changes: {}",
                    name_, key.ToString(), s.ToString());
      queue_.Forget(key);
      return;
    }
    spdlog::warn("{}: reconciling {} failed (retry {}): {}", name_, key.ToString(),
                 queue_.NumRequeues(key) + 1, s.ToString());
    queue_.AddRateLimited(key);
    return;
  }
  queue_.Forget(key);
  if (result->requeue_after) {
    total_.WithLabels({name_, "requeue_after"}).Inc();
    queue_.AddAfter(key, *result->requeue_after);
  } else {
    total_.WithLabels({name_, "success"}).Inc();
  }
}

}  // namespace petrel
