#include "kvstore/events.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "core/watcher_core.h"
#include "kvstore/mutex.h"

namespace kvstore {

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kCreate:
      return "create";
    case EventType::kModify:
      return "modify";
    case EventType::kDelete:
      return "delete";
    case EventType::kListDone:
      return "list-done";
  }
  return "unknown";
}

Watcher::Watcher(std::string prefix, size_t capacity)
    : prefix_(std::move(prefix)), core_(std::make_unique<internal::WatcherCore>(capacity)) {}

Watcher::~Watcher() = default;

bool Watcher::Emit(KeyValueEvent ev, const Context& ctx) { return core_->Emit(std::move(ev), ctx); }
void Watcher::Close() { core_->Close(); }
std::optional<KeyValueEvent> Watcher::Next() { return core_->Next(Context::Background()); }
std::optional<KeyValueEvent> Watcher::NextFor(std::chrono::nanoseconds timeout) {
  return core_->NextFor(timeout);
}
std::optional<KeyValueEvent> Watcher::Next(const Context& ctx) { return core_->Next(ctx); }
bool Watcher::NextBatch(const Context& ctx, std::deque<KeyValueEvent>* events) {
  return core_->NextBatch(ctx, events);
}
void Watcher::Stop() { core_->Stop(); }

namespace internal {

WatcherCore::WatcherCore(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

bool WatcherCore::Emit(KeyValueEvent ev, const Context& ctx) {
  MutexLock lock(mu_);
  bool ready = ctx.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopped_ || closed_ || buffer_.size() < capacity_;
  });
  if (!ready || stopped_ || closed_) return false;
  PushLocked(std::move(ev), lock);
  return true;
}

void WatcherCore::Close() {
  std::function<void()> hook;
  std::function<void()> readable;
  {
    MutexLock guard(mu_);
    closed_ = true;
    cv_.notify_all();
    hook = TakeSpaceHookLocked();
    readable = TakeReadableHookLocked();
  }
  if (hook) hook();
  if (readable) readable();
}

bool WatcherCore::TryEmit(KeyValueEvent& ev) {
  MutexLock lock(mu_);
  if (stopped_ || closed_ || buffer_.size() >= capacity_) return false;
  PushLocked(std::move(ev), lock);
  return true;
}

void WatcherCore::PushLocked(KeyValueEvent ev, MutexLock& lock) {
  buffer_.push_back(std::move(ev));
  // Consumers wait only on an empty buffer: waking them once per event would make a consumer
  // that keeps up take the lock twice per event for nothing.
  const bool wake = buffer_.size() == 1;
  std::function<void()> readable = TakeReadableHookLocked();
  lock.unlock(mu_);
  if (wake) cv_.notify_all();
  if (readable) readable();
}

std::function<void()> WatcherCore::TakeReadableHookLocked() {
  std::function<void()> hook;
  if (readable_hook_ && (stopped_ || closed_ || !buffer_.empty())) {
    hook = std::move(readable_hook_);
    readable_hook_ = nullptr;
  }
  return hook;
}

int WatcherCore::TryTakeBatch(std::deque<KeyValueEvent>* events) {
  MutexLock lock(mu_);
  if (stopped_) return -1;
  if (buffer_.empty()) return closed_ ? -1 : 0;
  // Producers wait only on a full buffer.
  const bool wake = buffer_.size() == capacity_;
  if (events->empty()) {
    events->swap(buffer_);
  } else {
    std::move(buffer_.begin(), buffer_.end(), std::back_inserter(*events));
    buffer_.clear();
  }
  std::function<void()> hook = TakeSpaceHookLocked();
  lock.unlock();
  if (wake) cv_.notify_all();
  if (hook) hook();
  return 1;
}

void WatcherCore::NotifyWhenReadable(std::function<void()> fn) {
  {
    MutexLock guard(mu_);
    readable_hook_ = std::move(fn);
    fn = TakeReadableHookLocked();
  }
  if (fn) fn();
}

void WatcherCore::NotifyWhenSpace(std::function<void()> fn) {
  {
    MutexLock guard(mu_);
    space_hook_ = std::move(fn);
    fn = TakeSpaceHookLocked();
  }
  if (fn) fn();
}

std::function<void()> WatcherCore::TakeSpaceHookLocked() {
  std::function<void()> hook;
  // Half empty rather than one free slot: the producer then hands over a batch per wake-up
  // instead of one event each time the consumer takes one.
  if (space_hook_ && (stopped_ || closed_ || buffer_.size() <= capacity_ / 2)) {
    hook = std::move(space_hook_);
    space_hook_ = nullptr;
  }
  return hook;
}

std::optional<KeyValueEvent> WatcherCore::PopLocked(MutexLock& lock) {
  if (buffer_.empty() || stopped_) {
    lock.unlock(mu_);
    return std::nullopt;
  }
  KeyValueEvent ev = std::move(buffer_.front());
  buffer_.pop_front();
  // Producers wait only on a full buffer.
  const bool wake = buffer_.size() + 1 == capacity_;
  std::function<void()> hook = TakeSpaceHookLocked();
  lock.unlock(mu_);
  if (wake) cv_.notify_all();
  if (hook) hook();
  return ev;
}

std::optional<KeyValueEvent> WatcherCore::Next(const Context& ctx) {
  MutexLock lock(mu_);
  ctx.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !buffer_.empty() || closed_ || stopped_;
  });
  return PopLocked(lock);
}

bool WatcherCore::NextBatch(const Context& ctx, std::deque<KeyValueEvent>* events) {
  {
    MutexLock lock(mu_);
    ctx.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !buffer_.empty() || closed_ || stopped_;
    });
  }
  // One consumer: what made the wait end still holds (only a Stop can come between).
  return TryTakeBatch(events) > 0;
}

std::optional<KeyValueEvent> WatcherCore::NextFor(std::chrono::nanoseconds timeout) {
  MutexLock lock(mu_);
  cv_.wait_for(lock, timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !buffer_.empty() || closed_ || stopped_;
  });
  return PopLocked(lock);
}

void WatcherCore::Stop() {
  std::function<void()> hook;
  std::function<void()> space_hook;
  std::function<void()> readable_hook;
  {
    MutexLock guard(mu_);
    if (!stopped_) {
      stopped_ = true;
      buffer_.clear();
      hook = std::move(stop_hook_);
      stop_hook_ = nullptr;
      cv_.notify_all();
      space_hook = TakeSpaceHookLocked();
      readable_hook = TakeReadableHookLocked();
    }
  }
  if (space_hook) space_hook();
  if (readable_hook) readable_hook();
  if (hook) hook();
  MutexLock lock(mu_);
  cv_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; });
}

bool WatcherCore::Stopped() const {
  MutexLock guard(mu_);
  return stopped_;
}

bool WatcherCore::Closed() const {
  MutexLock guard(mu_);
  return closed_ && buffer_.empty();
}

void WatcherCore::SetStopHook(std::function<void()> fn) {
  {
    MutexLock guard(mu_);
    if (!stopped_) {
      stop_hook_ = std::move(fn);
      return;
    }
  }
  fn();
}

}  // namespace internal
}  // namespace kvstore
