// KVSTORE_EXPORT marks what libkvstore.so exports: every class with out-of-line or virtual members
// and every non-inline function declared in include/kvstore/. The library is compiled with
// -fvisibility=hidden, so anything without the mark (all of src/) stays inside it. Header-only
// code (inline functions, templates such as the work queues) needs no mark.
#ifndef KVSTORE_EXPORT_H_
#define KVSTORE_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define KVSTORE_EXPORT __attribute__((visibility("default")))
#else
#define KVSTORE_EXPORT
#endif

#endif  // KVSTORE_EXPORT_H_
