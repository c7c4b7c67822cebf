// Drives a RateLimitingQueue<int> (on a FakeClock) through random operation sequences and checks
// it against a model of client-go's work queue: FIFO order, an item waiting at most once, never
// handed out while it is processing, re-queued once by Done when added meanwhile, delays and
// back-off as the rate limiter computes them, Len, and shutdown. A second, concurrent phase checks
// that two workers never hold the same item and that no added item is lost.
//
// Input: one flags byte, three rate limiter bytes, then operations (see RunSequential):
//   flags: bit 0 the fast-slow rate limiter (else the exponential one), bit 1 the concurrent phase
//          on the rest of the input after a kConcurrentPhase op (0xff).
//   op % 12: 0 Add; 1 Get; 2 Done; 3 AddAfter; 4 Advance the clock; 5 AddRateLimited; 6 Forget;
//            7 ShutDown; 8 ShutDownWithDrain; 9 GetBatch; 10 Done of the oldest item processing;
//            11 Get then Done.
//   Items are one byte mod 8; delays one byte in ms (255: a negative delay).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "kvstore/workqueue/rate_limiting_queue.h"

namespace kvstore::fuzz {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using Queue = workqueue::RateLimitingQueue<int>;

constexpr int kNumItems = 8;
// Items the fuzzer adds only to learn when the queue's delay thread caught up (see Advance).
constexpr int kFirstSentinel = 1000;
constexpr uint8_t kConcurrentPhase = 0xff;
constexpr auto kCatchUpTimeout = std::chrono::seconds(20);

// What the rate limiter under test must answer.
struct LimiterModel {
  bool fast_slow = false;
  nanoseconds base{0}, max{0};  // exponential
  nanoseconds fast{0}, slow{0};
  int max_fast_attempts = 0;
  std::map<int, int> requeues;

  nanoseconds When(int item) {
    int n = requeues[item]++;
    if (fast_slow) return n + 1 <= max_fast_attempts ? fast : slow;
    // base * 2^n, capped at max, without overflow.
    if (n >= 62 || base.count() > (max.count() >> n)) return max;
    return std::min(nanoseconds(base.count() << n), max);
  }
};

// The queue as client-go defines it.
class QueueModel {
 public:
  size_t Len() const { return waiting_.size(); }
  bool Empty() const { return waiting_.empty(); }
  bool shutting_down() const { return shutting_down_; }
  const std::map<int, bool>& processing() const { return processing_; }
  nanoseconds now() const { return now_; }

  void Add(int item) {
    if (shutting_down_) return;
    if (std::find(waiting_.begin(), waiting_.end(), item) != waiting_.end()) return;
    if (auto it = processing_.find(item); it != processing_.end()) {
      it->second = true;  // dirty: Done queues it again
      return;
    }
    waiting_.push_back(item);
  }

  int Get() {
    int item = waiting_.front();
    waiting_.pop_front();
    processing_[item] = false;
    return item;
  }

  void Done(int item) {
    auto it = processing_.find(item);
    if (it == processing_.end()) return;
    bool dirty = it->second;
    processing_.erase(it);
    if (dirty) waiting_.push_back(item);
  }

  void AddAfter(int item, nanoseconds delay) {
    if (shutting_down_) return;
    if (delay <= nanoseconds::zero()) {
      Add(item);
      return;
    }
    nanoseconds ready = now_ + delay;
    if (auto it = delayed_.find(item); it != delayed_.end()) {
      if (it->second.first <= ready) return;
    }
    delayed_[item] = {ready, ++sequence_};  // equal ready times keep insertion order
  }

  // Moves time; items now due are added in ready-time order.
  void Advance(nanoseconds d) {
    now_ += d;
    std::vector<std::tuple<nanoseconds, uint64_t, int>> due;
    for (auto it = delayed_.begin(); it != delayed_.end();) {
      if (it->second.first <= now_) {
        due.emplace_back(it->second.first, it->second.second, it->first);
        it = delayed_.erase(it);
      } else {
        ++it;
      }
    }
    std::sort(due.begin(), due.end());
    for (const auto& [ready, seq, item] : due) Add(item);
  }

  void ShutDown() {
    shutting_down_ = true;
    delayed_.clear();
  }

 private:
  std::deque<int> waiting_;
  std::map<int, bool> processing_;                           // item -> dirty
  std::map<int, std::pair<nanoseconds, uint64_t>> delayed_;  // item -> ready time, sequence
  uint64_t sequence_ = 0;
  nanoseconds now_{0};
  bool shutting_down_ = false;
};

std::string Show(const std::optional<int>& item) {
  return item ? std::to_string(*item) : std::string("nothing");
}

class SequentialRun {
 public:
  SequentialRun(FuzzInput& in, LimiterModel limiter) : in_(in), limiter_(std::move(limiter)) {
    std::shared_ptr<workqueue::RateLimiter<int>> real;
    if (limiter_.fast_slow) {
      real = std::make_shared<workqueue::ItemFastSlowRateLimiter<int>>(limiter_.fast, limiter_.slow,
                                                                       limiter_.max_fast_attempts);
    } else {
      real = std::make_shared<workqueue::ItemExponentialFailureRateLimiter<int>>(limiter_.base,
                                                                                 limiter_.max);
    }
    queue_ = std::make_unique<Queue>(real, clock_);
  }

  Queue& queue() { return *queue_; }
  bool shutting_down() const { return model_.shutting_down(); }

  // Returns when the input ends or asks for the concurrent phase.
  void Run() {
    while (!in_.Empty()) {
      uint8_t op = in_.Byte();
      if (op == kConcurrentPhase) return;
      Step(op);
      Check(op);
    }
  }

  // Ends the sequential phase: everything processing is Done.
  void FinishProcessing() {
    while (!model_.processing().empty()) {
      int item = model_.processing().begin()->first;
      model_.Done(item);
      queue_->Done(item);
    }
    Check(0);
  }

 private:
  int Item() { return in_.Byte() % kNumItems; }

  nanoseconds Delay() {
    uint8_t b = in_.Byte();
    return b == 255 ? nanoseconds(-1000) : nanoseconds(milliseconds(b));
  }

  void Step(uint8_t op) {
    switch (op % 12) {
      case 0: {
        int item = Item();
        model_.Add(item);
        queue_->Add(item);
        return;
      }
      case 1:
        GetOne();
        return;
      case 2: {
        int item = Item();
        model_.Done(item);
        queue_->Done(item);
        return;
      }
      case 3: {
        int item = Item();
        nanoseconds delay = Delay();
        model_.AddAfter(item, delay);
        queue_->AddAfter(item, delay);
        return;
      }
      case 4:
        Advance(milliseconds(in_.Byte()) * 4);
        return;
      case 5: {
        int item = Item();
        model_.AddAfter(item, limiter_.When(item));
        queue_->AddRateLimited(item);
        return;
      }
      case 6: {
        int item = Item();
        limiter_.requeues.erase(item);
        queue_->Forget(item);
        return;
      }
      case 7:
        model_.ShutDown();
        queue_->ShutDown();
        return;
      case 8:
        // It would wait for items this thread holds: only when none is processing.
        if (!model_.processing().empty()) return;
        model_.ShutDown();
        queue_->ShutDownWithDrain();
        return;
      case 9:
        GetBatch(in_.Byte() % 4);
        return;
      case 10:
        if (model_.processing().empty()) return;
        {
          int item = model_.processing().begin()->first;
          model_.Done(item);
          queue_->Done(item);
        }
        return;
      case 11:
        if (std::optional<int> item = GetOne()) {
          model_.Done(*item);
          queue_->Done(*item);
        }
        return;
    }
  }

  // Get blocks on an empty queue that is not shutting down: only called when it would not.
  std::optional<int> GetOne() {
    if (model_.Empty() && !model_.shutting_down()) return std::nullopt;
    std::optional<int> want;
    if (!model_.Empty()) want = model_.Get();
    std::optional<int> got = queue_->Get();
    FUZZ_CHECK(got == want, "Get returned " + Show(got) + ", want " + Show(want));
    return got;
  }

  void GetBatch(size_t max_items) {
    if (model_.Empty() && !model_.shutting_down()) return;
    std::vector<int> want;
    while (!model_.Empty() && want.size() < std::max<size_t>(max_items, 1)) {
      want.push_back(model_.Get());
    }
    std::vector<int> got = queue_->GetBatch(Context::Background(), max_items);
    FUZZ_CHECK(got == want, "GetBatch returned " + std::to_string(got.size()) + " items, want " +
                                std::to_string(want.size()));
  }

  // The queue's delay thread adds due items asynchronously. A sentinel item delayed by exactly
  // `d` is added last of all items due (equal ready times keep insertion order), and each add
  // can only grow Len() while this thread waits: once Len() reaches the model's, every due item
  // was handled.
  void Advance(nanoseconds d) {
    if (d <= nanoseconds::zero() || model_.shutting_down()) return;
    const int sentinel = next_sentinel_++;
    model_.AddAfter(sentinel, d);
    queue_->AddAfter(sentinel, d);
    model_.Advance(d);
    clock_->Advance(d);
    const auto deadline = std::chrono::steady_clock::now() + kCatchUpTimeout;
    while (queue_->Len() < model_.Len()) {
      FUZZ_CHECK(std::chrono::steady_clock::now() < deadline,
                 "delayed items not added after Advance: Len " + std::to_string(queue_->Len()) +
                     ", want " + std::to_string(model_.Len()));
      std::this_thread::yield();
    }
  }

  void Check(uint8_t op) {
    FUZZ_CHECK(queue_->Len() == model_.Len(), "after op " + std::to_string(op % 12) + ": Len " +
                                                  std::to_string(queue_->Len()) + ", want " +
                                                  std::to_string(model_.Len()));
    FUZZ_CHECK(queue_->ShuttingDown() == model_.shutting_down(), "ShuttingDown differs");
    for (int item = 0; item < kNumItems; ++item) {
      int want = limiter_.requeues.contains(item) ? limiter_.requeues.at(item) : 0;
      FUZZ_CHECK(queue_->NumRequeues(item) == want,
                 "NumRequeues(" + std::to_string(item) + ") is " +
                     std::to_string(queue_->NumRequeues(item)) + ", want " + std::to_string(want));
    }
  }

  FuzzInput& in_;
  LimiterModel limiter_;
  QueueModel model_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<Queue> queue_;
  int next_sentinel_ = kFirstSentinel;
};

// Two workers Get and Done while this thread adds the items named by the rest of the input. No
// item is held by both workers at once, and each item's last Add is followed by a Get of it.
void RunConcurrent(FuzzInput& in, Queue& queue) {
  std::mutex mu;
  std::set<int> held;                          // guarded by mu
  std::map<int, uint64_t> last_add, last_get;  // guarded by mu
  std::atomic<uint64_t> clock{0};
  // Taken before Add and after Get returns: a Get serving an Add always gets the larger number.
  auto worker = [&] {
    while (std::optional<int> item = queue.Get()) {
      uint64_t now = ++clock;
      {
        std::lock_guard<std::mutex> lock(mu);
        FUZZ_CHECK(held.insert(*item).second,
                   "item " + std::to_string(*item) + " handed to two workers at once");
        last_get[*item] = now;
      }
      std::this_thread::yield();
      {
        std::lock_guard<std::mutex> lock(mu);
        held.erase(*item);
      }
      queue.Done(*item);
    }
  };
  std::thread a(worker), b(worker);
  while (!in.Empty()) {
    int item = in.Byte() % kNumItems;
    uint64_t now = ++clock;
    {
      std::lock_guard<std::mutex> lock(mu);
      last_add[item] = now;
    }
    queue.Add(item);
  }
  // Stops Get once the queue is empty, and waits for the items being processed.
  queue.ShutDownWithDrain();
  a.join();
  b.join();
  FUZZ_CHECK(queue.Len() == 0, "items left after the workers stopped");
  for (const auto& [item, added] : last_add) {
    FUZZ_CHECK(last_get[item] > added, "item " + std::to_string(item) + " added but never got");
  }
}

void RunOne(FuzzInput& in) {
  const uint8_t flags = in.Byte();
  LimiterModel limiter;
  limiter.fast_slow = (flags & 1) != 0;
  const uint8_t b1 = in.Byte(), b2 = in.Byte(), b3 = in.Byte();
  limiter.base = milliseconds(1 + b1 % 8);
  limiter.max = limiter.base * (int64_t{1} << (b2 % 12));
  limiter.fast = milliseconds(b1);
  limiter.slow = milliseconds(b2) * 10;
  limiter.max_fast_attempts = b3 % 5;

  SequentialRun run(in, std::move(limiter));
  run.Run();
  run.FinishProcessing();
  if ((flags & 2) != 0 && !run.shutting_down()) RunConcurrent(in, run.queue());
}

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvstore::fuzz::FuzzInput in(data, size);
  kvstore::fuzz::RunOne(in);
  return 0;
}
