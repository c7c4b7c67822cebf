// Who joins a thread that has to end itself.
//
// Every component joins its threads itself, except one: the thread that runs a component's
// shutdown or destructor because the component's last owner was dropped inside one of its own
// callbacks (a lease-expired observer holding the last reference to a backend). A thread cannot
// join itself, so it is handed over here and joined by the reaper's thread once it has returned.
// The reaper's thread runs only while it has threads to join; the one process-wide reaper joins
// it when restarted and at exit.
#ifndef KVSTORE_CORE_THREAD_REAPER_H_
#define KVSTORE_CORE_THREAD_REAPER_H_

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

namespace kvstore::internal {

class ThreadReaper {
 public:
  static ThreadReaper& Instance();
  ThreadReaper(const ThreadReaper&) = delete;
  ThreadReaper& operator=(const ThreadReaper&) = delete;
  ~ThreadReaper();

  // Joins `thread` soon, on the reaper's thread. REQUIRES: `thread` is about to end (it is the
  // caller's own thread, on its way out).
  void Adopt(std::thread thread);
  // Threads adopted and not yet joined.
  size_t NumAdopted() const;

 private:
  ThreadReaper() = default;
  void Loop();

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<std::thread> adopted_;
  size_t joining_ = 0;    // taken from adopted_ by Loop, join not yet returned
  bool running_ = false;  // thread_ is in Loop
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_THREAD_REAPER_H_
