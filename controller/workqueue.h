// A work queue of object keys with client-go's semantics, feeding a controller's workers:
//
//  - Add() de-duplicates: a key added several times before a worker picks it up is handed
//    out once.
//  - Exclusivity: a key handed out by Get() is not handed out again until Done(); if it is
//    added meanwhile it is queued again when Done() is called. So one key is never
//    reconciled by two workers at once.
//  - AddAfter() delays an add; AddRateLimited() delays it by the larger of a per-key
//    exponential backoff (5 ms doubling up to 1000 s by default) and an overall token bucket
//    (10 qps, burst 100). Forget() resets a key's backoff; NumRequeues() reads it.
//  - ShutDown() wakes every waiting Get(), which then returns false; queued keys are dropped
//    (reconciliation is level-triggered, the next leader or start sees them again) and later
//    adds are ignored.
//
// Time comes from an injected Clock. Delayed keys become ready when the clock says so; with
// the real clock a blocked Get() sleeps exactly until the next one is due, with any other
// clock (a FakeClock in tests) it re-reads the clock every few milliseconds.
//
// Metrics (labelled name=<queue name>): workqueue_depth, workqueue_adds_total,
// workqueue_queue_duration_seconds, workqueue_work_duration_seconds, workqueue_retries_total,
// workqueue_unfinished_work_seconds, workqueue_longest_running_processor_seconds.
//
// Thread-safety: every method is safe to call from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "core/clock.h"
#include "core/metrics.h"
#include "core/types.h"

namespace petrel {

struct RateLimiterOptions {
  std::chrono::nanoseconds base_delay = std::chrono::milliseconds(5);
  std::chrono::nanoseconds max_delay = std::chrono::seconds(1000);
  double qps = 10;
  int burst = 100;
};

// client-go's DefaultControllerRateLimiter: max(per-item exponential, overall token bucket).
// Not thread-safe on its own; the WorkQueue guards it.
class RateLimiter {
 public:
  explicit RateLimiter(RateLimiterOptions options = {}) : options_(options) {}
  // The delay before `key` may be retried, counting this as one more failure.
  std::chrono::nanoseconds When(const ObjectKey& key, SteadyTime now);
  void Forget(const ObjectKey& key) { failures_.erase(key); }
  int NumRequeues(const ObjectKey& key) const;

 private:
  std::chrono::nanoseconds BucketDelay(SteadyTime now);

  RateLimiterOptions options_;
  std::map<ObjectKey, int> failures_;
  bool bucket_started_ = false;
  double tokens_ = 0;  // may go negative: reserved tokens not yet refilled
  SteadyTime last_refill_{};
};

struct WorkQueueOptions {
  std::string name;  // the metrics label; e.g. the controller's name
  Clock* clock = &Clock::Real();
  MetricsRegistry* metrics = &MetricsRegistry::Default();
  RateLimiterOptions rate_limiter;
};

class WorkQueue {
 public:
  explicit WorkQueue(WorkQueueOptions options);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Add(const ObjectKey& key);
  // Adds `key` once `delay` has passed; a key already waiting keeps the earlier time.
  void AddAfter(const ObjectKey& key, std::chrono::nanoseconds delay);
  void AddRateLimited(const ObjectKey& key);
  void Forget(const ObjectKey& key);
  int NumRequeues(const ObjectKey& key) const;

  // Blocks until a key is ready (true) or the queue is shut down (false).
  bool Get(ObjectKey* key);
  // Marks the key's processing finished; re-queues it if it was added meanwhile.
  void Done(const ObjectKey& key);

  void ShutDown();
  bool ShuttingDown() const;
  // Keys ready to be handed out (delayed keys not yet due are not counted).
  size_t Len();

 private:
  void AddLocked(const ObjectKey& key, SteadyTime now);
  // Moves delayed keys that are due into the queue; returns the next due time, if any.
  std::optional<SteadyTime> PromoteDueLocked(SteadyTime now);
  void UpdateGaugesLocked();
  void CollectLocked(SteadyTime now);

  const WorkQueueOptions options_;
  Clock& clock_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ObjectKey> queue_;
  std::set<ObjectKey> dirty_;                    // needs processing (queued or re-added)
  std::map<ObjectKey, SteadyTime> processing_;   // handed out, with start time
  std::map<ObjectKey, SteadyTime> added_at_;     // for queue latency
  std::map<ObjectKey, SteadyTime> waiting_;      // delayed keys and when they are due
  std::set<std::pair<SteadyTime, ObjectKey>> waiting_by_time_;
  RateLimiter limiter_;
  bool shutting_down_ = false;

  Gauge& depth_;
  Counter& adds_;
  Histogram& queue_duration_;
  Histogram& work_duration_;
  Counter& retries_;
  Gauge& unfinished_;
  Gauge& longest_running_;
  MetricsRegistry::HookHandle collect_hook_;
};

}  // namespace petrel
