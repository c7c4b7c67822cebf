#include "kvstore/context.h"

#include <map>
#include <thread>
#include <utility>

#include "kvstore/mutex.h"

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
  std::shared_ptr<Clock> clock;       // what `deadline` is measured on; null: real time
  std::shared_ptr<ContextState> parent;
  uint64_t parent_callback = 0;  // our registration on `parent`, removed when we go away

  Mutex mu;  // guards everything below
  CondVar cv;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status err ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  std::map<uint64_t, std::function<void()>> callbacks;
  uint64_t running_id ABSL_GUARDED_BY(mu) = 0;  // callback being run by Cancel, on `running_thread`
  std::thread::id running_thread ABSL_GUARDED_BY(mu);
  Timer timer ABSL_GUARDED_BY(mu);  // guarded by mu: ends the context at its deadline
};

namespace {

absl::Status DeadlineExceeded() { return absl::DeadlineExceededError("context deadline exceeded"); }

}  // namespace

ContextState::~ContextState() {
  timer.Stop();
  if (parent && parent_callback != 0) parent->RemoveCallback(parent_callback);
}

bool ContextState::DeadlinePassed() const {
  if (!deadline) return false;
  return (clock ? clock->Now() : std::chrono::steady_clock::now()) >= *deadline;
}

// Neither Done nor Err runs callbacks: they may be called with a lock held that a callback takes
// (Context::WaitOn does exactly that). A passed deadline is reported at once; the deadline timer
// runs the callbacks.
bool ContextState::Done() {
  MutexLock guard(mu);
  return done || DeadlinePassed();
}

absl::Status ContextState::Err() {
  MutexLock guard(mu);
  if (done) return err;
  if (DeadlinePassed()) return DeadlineExceeded();
  return absl::OkStatus();
}

void ContextState::Cancel(absl::Status reason) {
  MutexLock lock(mu);
  if (done) return;
  done = true;
  // The first reason wins, and a passed deadline came first even if its timer has not fired yet.
  err = DeadlinePassed() ? DeadlineExceeded() : std::move(reason);
  cv.notify_all();
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
  Timer deadline_timer = std::move(timer);
  lock.unlock();
  deadline_timer.Stop();
}

uint64_t ContextState::AddCallback(std::function<void()> fn) {
  {
    MutexLock guard(mu);
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
  MutexLock lock(mu);
  if (callbacks.erase(id) > 0) return;
  // Already run, or running now: wait for it unless it is this very thread that runs it.
  cv.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return running_id != id || running_thread == std::this_thread::get_id();
  });
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

std::optional<std::chrono::steady_clock::time_point> Context::RealTimeDeadline() const {
  if (!state_ || state_->clock) return std::nullopt;
  return state_->deadline;
}

bool Context::WaitFor(std::chrono::nanoseconds d) const {
  auto end = std::chrono::steady_clock::now() + d;
  if (!state_) {
    std::this_thread::sleep_until(end);
    return false;
  }
  if (!state_->clock && state_->deadline && *state_->deadline < end) end = *state_->deadline;
  {
    MutexLock lock(state_->mu);
    if (state_->cv.wait_until(
            lock, end, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) { return state_->done; }))
      return true;
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

// A child of `parent` (null: background), with `deadline` on `clock` (null: real time) if set.
std::shared_ptr<internal::ContextState> NewChild(
    const std::shared_ptr<internal::ContextState>& parent,
    std::optional<std::chrono::steady_clock::time_point> deadline, std::shared_ptr<Clock> clock) {
  auto child = std::make_shared<internal::ContextState>();
  child->deadline = deadline;
  child->clock = deadline ? std::move(clock) : nullptr;
  if (parent) {
    // The parent's deadline, when earlier and on the same clock, is the child's too, so that the
    // child reports it even before the parent's timer fired. On another clock, the parent's
    // cancellation reaches the child through the callback below.
    const bool same_clock = !child->deadline || child->clock == parent->clock;
    if (parent->deadline && same_clock &&
        (!child->deadline || *parent->deadline < *child->deadline)) {
      child->deadline = parent->deadline;
      child->clock = parent->clock;
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
    const Clock& on = child->clock ? *child->clock : *SystemClock();
    std::weak_ptr<internal::ContextState> weak = child;
    // The timer's function holds the state weakly. It may fire (and Cancel read `timer`)
    // before AfterFunc returns: the handle is set under the state's mutex.
    Timer timer = on.AfterFunc(*child->deadline - on.Now(), [weak] {
      if (auto state = weak.lock()) state->Cancel(internal::DeadlineExceeded());
    });
    MutexLock guard(child->mu);
    child->timer = std::move(timer);
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
  auto state = NewChild(parent.state_, std::nullopt, nullptr);
  return {Context(state), MakeCancel(state)};
}

std::pair<Context, CancelFunc> WithTimeout(const Context& parent, std::chrono::nanoseconds d) {
  return WithTimeout(parent, d, nullptr);
}

std::pair<Context, CancelFunc> WithTimeout(const Context& parent, std::chrono::nanoseconds d,
                                           const std::shared_ptr<Clock>& clock) {
  const Clock::time_point now = clock ? clock->Now() : std::chrono::steady_clock::now();
  const auto step = std::chrono::duration_cast<Clock::duration>(d);
  const Clock::time_point deadline = step <= Clock::duration::zero() ? now
                                     : Clock::time_point::max() - now <= step
                                         ? Clock::time_point::max()
                                         : now + step;
  return WithDeadline(parent, deadline, clock);
}

std::pair<Context, CancelFunc> WithDeadline(const Context& parent, Clock::time_point deadline,
                                            const std::shared_ptr<Clock>& clock) {
  auto state = NewChild(parent.state_, deadline, clock);
  return {Context(state), MakeCancel(state)};
}

}  // namespace kvstore
