// WatchLoop: the level-triggered loop of the node agent and the service proxy. On a thread of
// its own it runs `pass` (which re-reads all the state it acts on), then waits until a watch
// on Pods reports anything or `resync` passes, and runs it again. The watch only wakes the
// loop up early: events are drained, never interpreted. A watch that ends or fails is reopened
// on the next turn (meanwhile the loop still runs every `resync`).
//
// Thread-safety: Start and Stop from the owner's thread; Stop may be called more than once and
// from the destructor. `pass` runs on the loop's thread only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "controller/kube_client.h"

namespace petrel {

struct WatchLoopOptions {
  std::string label_selector;  // which Pods wake the loop; "" = every Pod
  std::chrono::milliseconds resync{1000};
};

class WatchLoop {
 public:
  WatchLoop(KubeClient& client, WatchLoopOptions options, std::function<void()> pass);
  ~WatchLoop();
  WatchLoop(const WatchLoop&) = delete;
  WatchLoop& operator=(const WatchLoop&) = delete;

  void Start();
  // Cancels the wait and joins the thread (a pass in progress finishes first).
  void Stop();

 private:
  void Run();

  KubeClient& client_;
  WatchLoopOptions options_;
  std::function<void()> pass_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;               // guarded by mu_
  std::unique_ptr<WatchStream> watch_;  // guarded by mu_ (for Cancel from Stop)
};

}  // namespace petrel
