#include "controller/workqueue.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace petrel {
namespace {
using namespace std::chrono_literals;

ObjectKey K(const std::string& name) { return ObjectKey{"ns", name}; }

class WorkQueueTest : public testing::Test {
 protected:
  WorkQueueOptions Options() {
    WorkQueueOptions o;
    o.name = "test";
    o.clock = &clock_;
    o.metrics = &metrics_;
    return o;
  }
  FakeClock clock_;
  MetricsRegistry metrics_;
};

TEST_F(WorkQueueTest, KeyAddedTwiceIsHandedOutOnce) {
  WorkQueue q(Options());
  q.Add(K("a"));
  q.Add(K("b"));
  q.Add(K("a"));
  EXPECT_EQ(q.Len(), 2u);
  ObjectKey got;
  ASSERT_TRUE(q.Get(&got));
  EXPECT_EQ(got, K("a"));
  ASSERT_TRUE(q.Get(&got));
  EXPECT_EQ(got, K("b"));
  EXPECT_EQ(q.Len(), 0u);
}

TEST_F(WorkQueueTest, KeyAddedWhileProcessingIsRequeuedOnlyAfterDone) {
  WorkQueue q(Options());
  q.Add(K("a"));
  ObjectKey got;
  ASSERT_TRUE(q.Get(&got));
  q.Add(K("a"));
  q.Add(K("a"));
  EXPECT_EQ(q.Len(), 0u) << "a key being processed must not be handed out again";
  q.Done(K("a"));
  EXPECT_EQ(q.Len(), 1u);
  ASSERT_TRUE(q.Get(&got));
  EXPECT_EQ(got, K("a"));
  q.Done(K("a"));
  EXPECT_EQ(q.Len(), 0u);
}

TEST_F(WorkQueueTest, ConcurrentWorkersNeverProcessTheSameKeyAtOnce) {
  WorkQueueOptions o = Options();
  o.clock = &Clock::Real();
  WorkQueue q(o);
  std::mutex mu;
  std::set<ObjectKey> in_flight;
  std::atomic<int> violations{0}, processed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      ObjectKey key;
      while (q.Get(&key)) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!in_flight.insert(key).second) ++violations;
        }
        std::this_thread::sleep_for(50us);
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(key);
        }
        ++processed;
        q.Done(key);
      }
    });
  }
  for (int i = 0; i < 20000; ++i) q.Add(K(std::to_string(i % 5)));
  // Every key is processed at least once after its last add.
  for (int i = 0; i < 2000 && (q.Len() > 0 || processed < 5); ++i) std::this_thread::sleep_for(1ms);
  q.ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_EQ(violations, 0);
  EXPECT_GE(processed, 5);
}

TEST_F(WorkQueueTest, RateLimitedBackoffDoublesFromFiveMillisecondsUpToTheCap) {
  RateLimiterOptions o;
  o.max_delay = 1000s;
  RateLimiter limiter(o);
  SteadyTime now{};
  std::vector<std::chrono::nanoseconds> expected = {5ms, 10ms, 20ms, 40ms, 80ms, 160ms};
  for (auto want : expected) EXPECT_EQ(limiter.When(K("a"), now), want);
  EXPECT_EQ(limiter.NumRequeues(K("a")), 6);
  for (int i = 0; i < 40; ++i) (void)limiter.When(K("b"), now);  // beyond 2^40 saturates
  EXPECT_EQ(limiter.When(K("b"), now), std::chrono::nanoseconds(1000s));
  limiter.Forget(K("a"));
  EXPECT_EQ(limiter.NumRequeues(K("a")), 0);
  EXPECT_EQ(limiter.When(K("a"), now), 5ms);
}

TEST_F(WorkQueueTest, TokenBucketLimitsOverallRetriesAfterTheBurst) {
  RateLimiter limiter;  // 10 qps, burst 100
  SteadyTime now{};
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(limiter.When(K(std::to_string(i)), now), 5ms) << i;  // first failure of each key
  }
  // The 101st distinct key finds the bucket empty: 1 token / 10 qps = 100 ms.
  EXPECT_EQ(limiter.When(K("x"), now), 100ms);
  EXPECT_EQ(limiter.When(K("y"), now), 200ms);
  // 100 ms of refill returns one token: the next reservation waits as long as the last did.
  EXPECT_EQ(limiter.When(K("z"), now + 100ms), 200ms);
  // After a long quiet period the bucket is full again (burst), not more.
  EXPECT_EQ(limiter.When(K("w"), now + 1h), 5ms);
}

TEST_F(WorkQueueTest, AddAfterHandsKeysOutInDueOrderOnlyOnceDue) {
  WorkQueue q(Options());
  q.AddAfter(K("late"), 300ms);
  q.AddAfter(K("early"), 100ms);
  q.AddAfter(K("middle"), 200ms);
  q.AddAfter(K("late"), 500ms);  // keeps the earlier due time
  EXPECT_EQ(q.Len(), 0u);
  clock_.Advance(150ms);
  EXPECT_EQ(q.Len(), 1u);
  clock_.Advance(200ms);
  EXPECT_EQ(q.Len(), 3u);
  std::vector<std::string> order;
  ObjectKey got;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.Get(&got));
    order.push_back(got.name);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"early", "middle", "late"}));
}

TEST_F(WorkQueueTest, BlockedGetWakesWhenADelayedKeyBecomesDue) {
  WorkQueue q(Options());
  q.AddAfter(K("a"), 1s);
  std::atomic<bool> got_it{false};
  std::thread worker([&] {
    ObjectKey key;
    if (q.Get(&key)) got_it = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(got_it);
  clock_.Advance(1s);
  worker.join();  // returns once the worker notices the clock moved
  EXPECT_TRUE(got_it);
}

TEST_F(WorkQueueTest, AddRateLimitedDelaysByTheBackoffAndForgetResetsIt) {
  WorkQueue q(Options());
  q.AddRateLimited(K("a"));
  EXPECT_EQ(q.Len(), 0u);
  clock_.Advance(5ms);
  EXPECT_EQ(q.Len(), 1u);
  ObjectKey got;
  ASSERT_TRUE(q.Get(&got));
  q.AddRateLimited(K("a"));
  q.Done(K("a"));
  clock_.Advance(9ms);
  EXPECT_EQ(q.Len(), 0u);
  clock_.Advance(1ms);
  EXPECT_EQ(q.Len(), 1u);
  EXPECT_EQ(q.NumRequeues(K("a")), 2);
  q.Forget(K("a"));
  EXPECT_EQ(q.NumRequeues(K("a")), 0);
}

TEST_F(WorkQueueTest, ShutDownWakesEveryGetterAndIgnoresLaterAdds) {
  WorkQueue q(Options());
  std::atomic<int> returned_false{0};
  std::vector<std::thread> getters;
  for (int i = 0; i < 3; ++i) {
    getters.emplace_back([&] {
      ObjectKey key;
      if (!q.Get(&key)) ++returned_false;
    });
  }
  std::this_thread::sleep_for(20ms);
  q.ShutDown();
  for (auto& t : getters) t.join();
  EXPECT_EQ(returned_false, 3);
  q.Add(K("a"));
  EXPECT_EQ(q.Len(), 0u);
  ObjectKey key;
  EXPECT_FALSE(q.Get(&key));
  EXPECT_TRUE(q.ShuttingDown());
}

TEST_F(WorkQueueTest, MetricsReportDepthAddsRetriesAndDurations) {
  WorkQueue q(Options());
  q.Add(K("a"));
  q.Add(K("b"));
  q.Add(K("a"));
  ObjectKey got;
  ASSERT_TRUE(q.Get(&got));
  clock_.Advance(2s);
  q.AddRateLimited(K("c"));
  std::string text = metrics_.Expose();
  EXPECT_NE(text.find("workqueue_depth{name=\"test\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("workqueue_adds_total{name=\"test\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("workqueue_retries_total{name=\"test\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("workqueue_unfinished_work_seconds{name=\"test\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("workqueue_longest_running_processor_seconds{name=\"test\"} 2\n"),
            std::string::npos);
  q.Done(got);
  text = metrics_.Expose();
  EXPECT_NE(text.find("workqueue_work_duration_seconds_count{name=\"test\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("workqueue_queue_duration_seconds_count{name=\"test\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace petrel
