#include "kvstore/context.h"

#include <map>
#include <thread>
#include <utility>

namespace kvstore {
namespace internal {

using TimePoint = std::chrono::steady_clock::time_point;

// The shared state behind a cancellable Context.
struct ContextState : std::enable_shared_from_this<ContextState> {
  ~ContextState();

  bool Done();
  absl::Status Err();
  bool DeadlinePassed() const;
  // Makes the context done with `err` (first reason wins) and runs the callbacks.
  void Cancel(absl::Status err);
  uint64_t AddCallback(std::function<void()> fn);
  void RemoveCallback(uint64_t id);

  std::optional<TimePoint> deadline;  // set before the state is shared, then constant
  std::shared_ptr<ContextState> parent;
  uint64_t parent_callback = 0;  // our registration on `parent`, removed when we go away

  std::mutex mu;  // guards everything below
  std::condition_variable cv;
  bool done = false;
  absl::Status err;
  uint64_t next_id = 1;
  std::map<uint64_t, std::function<void()>> callbacks;
  uint64_t running_id = 0;  // callback being run by Cancel, on `running_thread`
  std::thread::id running_thread;
  uint64_t timer_id = 0;  // registration with the deadline timer
};

namespace {

absl::Status DeadlineExceeded() { return absl::DeadlineExceededError("context deadline exceeded"); }

// Cancels contexts whose deadline passed. One for the whole process; its thread runs only while
// some deadline is pending (and a little longer, so that a steady stream of short timeouts does
// not start a thread each), and is joined by the timer: when it is restarted and at exit. The
// object itself is never destroyed, so contexts may still be made and dropped from static
// destructors; after exit began, their deadlines are still reported by Done()/Err() and end
// waits, but run no callbacks.
class DeadlineTimer {
 public:
  static DeadlineTimer& Get() {
    static DeadlineTimer* const timer = new DeadlineTimer();
    // Destroyed at exit, in reverse order of construction: joins the thread.
    static const StopAtExit stop_at_exit{timer};
    return *timer;
  }

  uint64_t Add(TimePoint when, std::weak_ptr<ContextState> state) {
    std::lock_guard<std::mutex> guard(mu_);
    uint64_t id = next_id_++;
    bool earliest = entries_.empty() || when < entries_.begin()->first.first;
    entries_.emplace(std::make_pair(when, id), std::move(state));
    index_.emplace(id, when);
    if (!running_ && !stopped_) {
      // The previous thread, if any, has left its loop: it released mu_ for the last time.
      if (thread_.joinable()) thread_.join();
      running_ = true;
      thread_ = std::thread([this] { Loop(); });
    } else if (earliest) {
      cv_.notify_one();
    }
    return id;
  }

  void Remove(uint64_t id) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return;
    entries_.erase(std::make_pair(it->second, id));
    index_.erase(it);
    // The thread may sleep until the deadline just removed: let it start lingering instead.
    if (entries_.empty()) cv_.notify_one();
  }

 private:
  // How long the thread waits for a new deadline once none is pending, before it ends.
  static constexpr auto kIdleLinger = std::chrono::seconds(2);

  struct StopAtExit {
    DeadlineTimer* timer;
    ~StopAtExit() { timer->Stop(); }
  };

  DeadlineTimer() = default;

  void Stop() {
    std::thread thread;
    {
      std::lock_guard<std::mutex> guard(mu_);
      stopped_ = true;
      cv_.notify_all();
      thread.swap(thread_);
    }
    if (!thread.joinable()) return;
    // exit() called from a context callback: the loop ends once that callback returns.
    if (thread.get_id() == std::this_thread::get_id()) {
      thread.detach();
    } else {
      thread.join();
    }
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_) {
      if (entries_.empty()) {
        if (!cv_.wait_for(lock, kIdleLinger, [this] { return stopped_ || !entries_.empty(); })) {
          break;
        }
        continue;
      }
      auto first = entries_.begin();
      // A copy: Remove may erase the entry while we sleep.
      const TimePoint deadline = first->first.first;
      if (std::chrono::steady_clock::now() < deadline) {
        cv_.wait_until(lock, deadline);
        continue;
      }
      std::weak_ptr<ContextState> weak = std::move(first->second);
      index_.erase(first->first.second);
      entries_.erase(first);
      lock.unlock();
      if (auto state = weak.lock()) {
        state->Cancel(DeadlineExceeded());
      }
      lock.lock();
    }
    running_ = false;
  }

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::map<std::pair<TimePoint, uint64_t>, std::weak_ptr<ContextState>> entries_;
  std::map<uint64_t, TimePoint> index_;
  uint64_t next_id_ = 1;
  bool running_ = false;  // thread_ is in Loop
  bool stopped_ = false;  // exit began: no thread any more
  std::thread thread_;
};

}  // namespace

ContextState::~ContextState() {
  if (timer_id != 0) DeadlineTimer::Get().Remove(timer_id);
  if (parent && parent_callback != 0) parent->RemoveCallback(parent_callback);
}

bool ContextState::DeadlinePassed() const {
  return deadline && std::chrono::steady_clock::now() >= *deadline;
}

// Neither Done nor Err runs callbacks: they may be called with a lock held that a callback takes
// (Context::WaitOn does exactly that). A passed deadline is reported at once; the deadline timer
// runs the callbacks.
bool ContextState::Done() {
  std::lock_guard<std::mutex> guard(mu);
  return done || DeadlinePassed();
}

absl::Status ContextState::Err() {
  std::lock_guard<std::mutex> guard(mu);
  if (done) return err;
  if (DeadlinePassed()) return DeadlineExceeded();
  return absl::OkStatus();
}

void ContextState::Cancel(absl::Status reason) {
  std::unique_lock<std::mutex> lock(mu);
  if (done) return;
  done = true;
  // The first reason wins, and a passed deadline came first even if its timer has not fired yet.
  err = DeadlinePassed() ? DeadlineExceeded() : std::move(reason);
  cv.notify_all();
  uint64_t timer = std::exchange(timer_id, 0);
  // Run callbacks one at a time without the lock, so RemoveCallback can still drop those that
  // have not run yet and can wait for the one that is running.
  while (!callbacks.empty()) {
    auto first = callbacks.begin();
    std::function<void()> fn = std::move(first->second);
    running_id = first->first;
    running_thread = std::this_thread::get_id();
    callbacks.erase(first);
    lock.unlock();
    fn();
    lock.lock();
    running_id = 0;
    cv.notify_all();
  }
  lock.unlock();
  if (timer != 0) DeadlineTimer::Get().Remove(timer);
}

uint64_t ContextState::AddCallback(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> guard(mu);
    if (!done) {
      uint64_t id = next_id++;
      callbacks.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return 0;
}

void ContextState::RemoveCallback(uint64_t id) {
  std::unique_lock<std::mutex> lock(mu);
  if (callbacks.erase(id) > 0) return;
  // Already run, or running now: wait for it unless it is this very thread that runs it.
  cv.wait(lock, [&] { return running_id != id || running_thread == std::this_thread::get_id(); });
}

}  // namespace internal

Context::Context() = default;

Context::Context(std::shared_ptr<internal::ContextState> state) : state_(std::move(state)) {}

Context Context::Background() { return Context(); }

bool Context::Done() const { return state_ && state_->Done(); }

absl::Status Context::Err() const { return state_ ? state_->Err() : absl::OkStatus(); }

std::optional<std::chrono::steady_clock::time_point> Context::Deadline() const {
  if (!state_) return std::nullopt;
  return state_->deadline;
}

bool Context::WaitFor(std::chrono::nanoseconds d) const {
  auto end = std::chrono::steady_clock::now() + d;
  if (!state_) {
    std::this_thread::sleep_until(end);
    return false;
  }
  if (state_->deadline && *state_->deadline < end) end = *state_->deadline;
  {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (state_->cv.wait_until(lock, end, [&] { return state_->done; })) return true;
  }
  return Done();
}

void Context::Wait() const {
  if (!state_) {
    while (true) std::this_thread::sleep_for(std::chrono::hours(24));
  }
  while (!WaitFor(std::chrono::hours(1))) {
  }
}

uint64_t Context::AddCallback(std::function<void()> fn) const {
  if (!state_) return 0;
  if (state_->Done()) {
    fn();
    return 0;
  }
  return state_->AddCallback(std::move(fn));
}

void Context::RemoveCallback(uint64_t id) const {
  if (state_ && id != 0) state_->RemoveCallback(id);
}

namespace {

std::shared_ptr<internal::ContextState> NewChild(
    const std::shared_ptr<internal::ContextState>& parent,
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  auto child = std::make_shared<internal::ContextState>();
  child->deadline = deadline;
  if (parent) {
    if (parent->deadline && (!child->deadline || *parent->deadline < *child->deadline)) {
      child->deadline = parent->deadline;
    }
    child->parent = parent;
    std::weak_ptr<internal::ContextState> weak_child = child;
    std::weak_ptr<internal::ContextState> weak_parent = parent;
    child->parent_callback = parent->AddCallback([weak_child, weak_parent] {
      auto c = weak_child.lock();
      auto p = weak_parent.lock();
      if (!c) return;
      c->Cancel(p ? p->Err() : absl::CancelledError("context canceled"));
    });
  }
  if (child->deadline && !child->Done()) {
    uint64_t timer = internal::DeadlineTimer::Get().Add(*child->deadline, child);
    std::lock_guard<std::mutex> guard(child->mu);
    // When the timer already fired, Cancel found no id to remove and the entry is gone anyway.
    if (!child->done) child->timer_id = timer;
  }
  return child;
}

CancelFunc MakeCancel(const std::shared_ptr<internal::ContextState>& state) {
  std::weak_ptr<internal::ContextState> weak = state;
  return [weak] {
    if (auto s = weak.lock()) s->Cancel(absl::CancelledError("context canceled"));
  };
}

}  // namespace

std::pair<Context, CancelFunc> WithCancel(const Context& parent) {
  auto state = NewChild(parent.state_, std::nullopt);
  return {Context(state), MakeCancel(state)};
}

std::pair<Context, CancelFunc> WithTimeout(const Context& parent, std::chrono::nanoseconds d) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
  auto state = NewChild(parent.state_, deadline);
  return {Context(state), MakeCancel(state)};
}

}  // namespace kvstore
