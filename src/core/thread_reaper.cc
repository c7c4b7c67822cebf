#include "core/thread_reaper.h"

#include <utility>

namespace kvstore::internal {

ThreadReaper& ThreadReaper::Instance() {
  // Destroyed at exit, which joins the reaper's thread (after the threads it adopted).
  static ThreadReaper reaper;
  return reaper;
}

ThreadReaper::~ThreadReaper() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> guard(mu_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

void ThreadReaper::Adopt(std::thread thread) {
  std::lock_guard<std::mutex> guard(mu_);
  if (stopping_) {
    // Only during exit, after the reaper joined its own thread: nobody is left to join.
    thread.detach();
    return;
  }
  adopted_.push_back(std::move(thread));
  if (!running_) {
    // The previous thread, if any, has left Loop: it released mu_ for the last time.
    if (thread_.joinable()) thread_.join();
    running_ = true;
    thread_ = std::thread([this] { Loop(); });
  }
  cv_.notify_all();
}

size_t ThreadReaper::NumAdopted() const {
  std::lock_guard<std::mutex> guard(mu_);
  return adopted_.size() + joining_;
}

void ThreadReaper::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!adopted_.empty()) {
    std::vector<std::thread> threads = std::move(adopted_);
    adopted_.clear();
    joining_ = threads.size();
    lock.unlock();
    for (std::thread& thread : threads) thread.join();
    lock.lock();
    joining_ = 0;
  }
  // Nothing left to join: end, and let the next Adopt start a thread again.
  running_ = false;
}

}  // namespace kvstore::internal
