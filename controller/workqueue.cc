#include "controller/workqueue.h"

#include <algorithm>
#include <cmath>

namespace petrel {
namespace {
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }

// How long a blocked Get() sleeps before re-reading a clock that is not the real one.
constexpr auto kFakeClockPoll = std::chrono::milliseconds(5);
}  // namespace

std::chrono::nanoseconds RateLimiter::When(const ObjectKey& key, SteadyTime now) {
  int failures = failures_[key]++;
  // 5ms * 2^failures, computed in double so that large exponents saturate instead of wrapping.
  double item_ns = static_cast<double>(options_.base_delay.count()) * std::pow(2.0, failures);
  nanoseconds item = item_ns >= static_cast<double>(options_.max_delay.count())
                         ? options_.max_delay
                         : nanoseconds(static_cast<int64_t>(item_ns));
  return std::max(item, BucketDelay(now));
}

int RateLimiter::NumRequeues(const ObjectKey& key) const {
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

// Reserves one token; the delay is how long until that token exists (golang.org/x/time/rate's
// Reserve().Delay()).
std::chrono::nanoseconds RateLimiter::BucketDelay(SteadyTime now) {
  if (!bucket_started_) {
    bucket_started_ = true;
    tokens_ = options_.burst;
    last_refill_ = now;
  }
  if (now > last_refill_) {
    tokens_ = std::min<double>(options_.burst, tokens_ + Seconds(now - last_refill_) * options_.qps);
    last_refill_ = now;
  }
  tokens_ -= 1;
  if (tokens_ >= 0) return nanoseconds(0);
  return nanoseconds(static_cast<int64_t>(-tokens_ / options_.qps * 1e9));
}

WorkQueue::WorkQueue(WorkQueueOptions options)
    : options_(std::move(options)),
      clock_(*options_.clock),
      limiter_(options_.rate_limiter),
      depth_(options_.metrics->Gauge("workqueue_depth", "Current depth of the workqueue.", {"name"})
                 .WithLabels({options_.name})),
      adds_(options_.metrics->Counter("workqueue_adds_total", "Total adds handled by the workqueue.",
                                      {"name"})
                .WithLabels({options_.name})),
      queue_duration_(options_.metrics
                          ->Histogram("workqueue_queue_duration_seconds",
                                      "Seconds a key waits in the workqueue before it is handed "
                                      "to a worker.",
                                      {"name"}, ExponentialBuckets(1e-6, 10, 10))
                          .WithLabels({options_.name})),
      work_duration_(options_.metrics
                         ->Histogram("workqueue_work_duration_seconds",
                                     "Seconds processing a key from the workqueue takes.",
                                     {"name"}, ExponentialBuckets(1e-6, 10, 10))
                         .WithLabels({options_.name})),
      retries_(options_.metrics->Counter("workqueue_retries_total",
                                         "Total rate-limited retries handled by the workqueue.",
                                         {"name"})
                   .WithLabels({options_.name})),
      unfinished_(options_.metrics
                      ->Gauge("workqueue_unfinished_work_seconds",
                              "Seconds of work in progress not yet observed by work_duration; "
                              "large values indicate stuck workers.",
                              {"name"})
                      .WithLabels({options_.name})),
      longest_running_(options_.metrics
                           ->Gauge("workqueue_longest_running_processor_seconds",
                                   "Seconds the longest running worker has been processing its key.",
                                   {"name"})
                           .WithLabels({options_.name})) {
  collect_hook_ = options_.metrics->AddCollectHook([this] {
    std::lock_guard<std::mutex> lock(mu_);
    CollectLocked(clock_.Now());
  });
}

WorkQueue::~WorkQueue() {
  collect_hook_ = {};
  ShutDown();
}

void WorkQueue::Add(const ObjectKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key, clock_.Now());
}

void WorkQueue::AddLocked(const ObjectKey& key, SteadyTime now) {
  if (shutting_down_) return;
  if (dirty_.count(key)) return;
  adds_.Inc();
  dirty_.insert(key);
  added_at_.emplace(key, now);
  if (processing_.count(key)) return;  // queued again by Done()
  queue_.push_back(key);
  UpdateGaugesLocked();
  cv_.notify_one();
}

void WorkQueue::AddAfter(const ObjectKey& key, std::chrono::nanoseconds delay) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  SteadyTime now = clock_.Now();
  if (delay <= nanoseconds(0)) {
    AddLocked(key, now);
    return;
  }
  SteadyTime due = now + duration_cast<SteadyTime::duration>(delay);
  auto it = waiting_.find(key);
  if (it != waiting_.end()) {
    if (it->second <= due) return;
    waiting_by_time_.erase({it->second, key});
    it->second = due;
  } else {
    waiting_.emplace(key, due);
  }
  waiting_by_time_.insert({due, key});
  // A waiting Get() may need to wake earlier than it planned.
  cv_.notify_all();
}

void WorkQueue::AddRateLimited(const ObjectKey& key) {
  nanoseconds delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return;
    delay = limiter_.When(key, clock_.Now());
    retries_.Inc();
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const ObjectKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  limiter_.Forget(key);
}

int WorkQueue::NumRequeues(const ObjectKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return limiter_.NumRequeues(key);
}

std::optional<SteadyTime> WorkQueue::PromoteDueLocked(SteadyTime now) {
  while (!waiting_by_time_.empty()) {
    auto first = waiting_by_time_.begin();
    if (first->first > now) return first->first;
    ObjectKey key = first->second;
    waiting_by_time_.erase(first);
    waiting_.erase(key);
    AddLocked(key, now);
  }
  return std::nullopt;
}

bool WorkQueue::Get(ObjectKey* key) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool real_clock = &clock_ == &Clock::Real();
  while (true) {
    if (shutting_down_) return false;
    SteadyTime now = clock_.Now();
    std::optional<SteadyTime> next_due = PromoteDueLocked(now);
    if (!queue_.empty()) break;
    if (!next_due) {
      cv_.wait(lock);
    } else if (real_clock) {
      cv_.wait_until(lock, *next_due);
    } else {
      cv_.wait_for(lock, kFakeClockPoll);
    }
  }
  *key = std::move(queue_.front());
  queue_.pop_front();
  SteadyTime now = clock_.Now();
  dirty_.erase(*key);
  if (auto it = added_at_.find(*key); it != added_at_.end()) {
    queue_duration_.Observe(Seconds(now - it->second));
    added_at_.erase(it);
  }
  processing_[*key] = now;
  UpdateGaugesLocked();
  return true;
}

void WorkQueue::Done(const ObjectKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = processing_.find(key);
  if (it == processing_.end()) return;
  work_duration_.Observe(Seconds(clock_.Now() - it->second));
  processing_.erase(it);
  if (dirty_.count(key) && !shutting_down_) {
    queue_.push_back(key);
    UpdateGaugesLocked();
    cv_.notify_one();
  }
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  queue_.clear();
  dirty_.clear();
  added_at_.clear();
  waiting_.clear();
  waiting_by_time_.clear();
  UpdateGaugesLocked();
  cv_.notify_all();
}

bool WorkQueue::ShuttingDown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutting_down_;
}

size_t WorkQueue::Len() {
  std::lock_guard<std::mutex> lock(mu_);
  PromoteDueLocked(clock_.Now());
  return queue_.size();
}

void WorkQueue::UpdateGaugesLocked() { depth_.Set(static_cast<double>(queue_.size())); }

void WorkQueue::CollectLocked(SteadyTime now) {
  double total = 0, longest = 0;
  for (const auto& [key, start] : processing_) {
    double s = Seconds(now - start);
    total += s;
    longest = std::max(longest, s);
  }
  unfinished_.Set(total);
  longest_running_.Set(longest);
}

}  // namespace petrel
