// Names the calling thread (what /proc/<pid>/task/*/comm, top -H and gdb show), so that a
// process's threads can be told apart and counted by owner. Private to the library.
#ifndef KVSTORE_CORE_THREAD_NAME_H_
#define KVSTORE_CORE_THREAD_NAME_H_

#include <pthread.h>

namespace kvstore::internal {

// `name` is cut to the 15 characters Linux keeps. Best effort: a failure changes nothing else.
inline void NameThisThread(const char* name) {
  char cut[16] = {};
  for (int i = 0; i < 15 && name[i] != '\0'; ++i) cut[i] = name[i];
  (void)pthread_setname_np(pthread_self(), cut);
}

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_THREAD_NAME_H_
