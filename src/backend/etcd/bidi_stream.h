// A bidirectional stream (Watch, LeaseKeepAlive) on the process's completion queue
// (CompletionPoller): reads and writes complete on the poller's thread, so the handlers must not
// block.
#ifndef KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_
#define KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/etcd/call_registry.h"
#include "backend/etcd/completion_poller.h"
#include "backend/etcd/transport.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

template <typename Req, typename Resp>
class BidiStream final : public RequestStream<Req> {
 public:
  using ReadHandler = Transport::ReadHandler<Resp>;
  using DoneHandler = Transport::DoneHandler;
  // Turns the stream's final gRPC status into the library's (and does whatever else the owner
  // learns from it). Runs on the poller's thread.
  using Translator =
      std::function<absl::Status(const grpc::Status& status, const grpc::ClientContext& context)>;
  using ReaderWriter = grpc::ClientAsyncReaderWriter<Req, Resp>;
  // Prepares the stub's streaming method on `queue`: stub->PrepareAsyncMethod(context, queue).
  using Binder = std::function<std::unique_ptr<ReaderWriter>(grpc::ClientContext* context,
                                                             grpc::CompletionQueue* queue)>;

  // Starts a stream on `queue`: `prepare` sets its metadata, `bind` attaches it to a stub. Fails
  // when the registry is shut down.
  static absl::StatusOr<std::shared_ptr<BidiStream>> Start(
      CallRegistry* registry, grpc::CompletionQueue* queue, Translator translate,
      ReadHandler on_read, DoneHandler on_done,
      const std::function<void(grpc::ClientContext*)>& prepare, const Binder& bind);

  void Write(Req request) override;
  void Cancel() override;

 private:
  enum class Op { kStart, kRead, kWrite, kFinish };
  // One kind of operation's tag: at most one of each kind is in flight.
  class OpTag final : public CompletionPoller::Tag {
   public:
    OpTag(BidiStream* stream, Op op) : stream_(stream), op_(op) {}
    void Proceed(bool ok) override { stream_->OnOpDone(op_, ok); }

   private:
    BidiStream* const stream_;
    const Op op_;
  };

  BidiStream(CallRegistry* registry, Translator translate, ReadHandler on_read, DoneHandler on_done)
      : registry_(registry),
        translate_(std::move(translate)),
        on_read_(std::move(on_read)),
        on_done_(std::move(on_done)) {}

  // The queue hands back the void* it was given: always a CompletionPoller::Tag*. Every operation
  // is handed over (CompletionPoller::HandOver) as its tag is given.
  static void* Tagged(CompletionPoller::Tag* tag) {
    CompletionPoller::HandOver();
    return tag;
  }

  void OnOpDone(Op op, bool ok);
  // Starts the next pending write, or Finish once reads ended and no write is in flight.
  void ContinueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnFinished();

  CallRegistry* const registry_;
  Translator translate_;
  ReadHandler on_read_;
  DoneHandler on_done_;
  OpTag start_tag_{this, Op::kStart}, read_tag_{this, Op::kRead}, write_tag_{this, Op::kWrite},
      finish_tag_{this, Op::kFinish};
  // Destroyed in OnFinished, not with the stream: it holds a reference to the channel (see
  // CallRegistry). Cancel reaches it only through canceller_.
  std::unique_ptr<grpc::ClientContext> context_ = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<ReaderWriter> stream_;  // in the call's arena: released before the context
  Resp response_;
  grpc::Status status_;
  std::shared_ptr<BidiStream> self_;  // keeps the stream alive until OnFinished
  // Cancels the context, not before its headers are written; set in Start, detached in OnFinished.
  std::shared_ptr<CallCanceller> canceller_;

  Mutex mu_;  // guards the state below
  std::deque<Req> pending_writes_ ABSL_GUARDED_BY(mu_);
  Req current_write_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_finished_ ABSL_GUARDED_BY(mu_) = false;  // no more writes are started once set
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
};

template <typename Req, typename Resp>
absl::StatusOr<std::shared_ptr<BidiStream<Req, Resp>>> BidiStream<Req, Resp>::Start(
    CallRegistry* registry, grpc::CompletionQueue* queue, Translator translate, ReadHandler on_read,
    DoneHandler on_done, const std::function<void(grpc::ClientContext*)>& prepare,
    const Binder& bind) {
  std::shared_ptr<BidiStream> stream(
      new BidiStream(registry, std::move(translate), std::move(on_read), std::move(on_done)));
  grpc::ClientContext* context = stream->context_.get();
  prepare(context);
  if (!registry->Register(context)) return absl::FailedPreconditionError("etcd backend is closed");
  stream->self_ = stream;
  stream->canceller_ = CallCanceller::Start(context);
  MutexLock guard(stream->mu_);
  stream->stream_ = bind(context, queue);
  stream->stream_->StartCall(Tagged(&stream->start_tag_));
  return stream;
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Write(Req request) {
  MutexLock guard(mu_);
  if (reads_finished_) return;
  pending_writes_.push_back(std::move(request));
  ContinueLocked();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Cancel() {
  canceller_->Cancel();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::ContinueLocked() {
  if (!started_ || writing_ || finishing_) return;
  if (reads_finished_) {
    // Nothing is in flight any more: the status is all that is left to receive.
    finishing_ = true;
    pending_writes_.clear();
    stream_->Finish(&status_, Tagged(&finish_tag_));
    return;
  }
  if (pending_writes_.empty()) return;
  current_write_ = std::move(pending_writes_.front());
  pending_writes_.pop_front();
  writing_ = true;
  stream_->Write(current_write_, Tagged(&write_tag_));
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnOpDone(Op op, bool ok) {
  switch (op) {
    case Op::kStart: {
      // The headers are written: a Cancel no longer waits for them.
      if (ok) canceller_->Started();
      MutexLock guard(mu_);
      started_ = true;
      if (ok) {
        stream_->Read(&response_, Tagged(&read_tag_));
      } else {
        reads_finished_ = true;  // the call did not start: its status tells why
      }
      ContinueLocked();
      return;
    }
    case Op::kRead:
      if (ok) {
        on_read_(response_);
        MutexLock guard(mu_);
        stream_->Read(&response_, Tagged(&read_tag_));
        return;
      } else {
        MutexLock guard(mu_);
        reads_finished_ = true;
        ContinueLocked();
        return;
      }
    case Op::kWrite: {
      MutexLock guard(mu_);
      writing_ = false;
      if (!ok) pending_writes_.clear();  // the stream is broken; reads will report it
      ContinueLocked();
      return;
    }
    case Op::kFinish:
      OnFinished();
      return;
  }
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnFinished() {
  absl::Status translated = translate_(status_, *context_);
  DoneHandler on_done = std::move(on_done_);
  on_read_ = nullptr;
  translate_ = nullptr;
  if (on_done) on_done(translated);
  on_done = nullptr;
  CallRegistry* const registry = registry_;
  registry->Unregister(context_.get());
  canceller_->Detach();  // a Cancel from now on does not touch the context
  {
    MutexLock guard(mu_);  // the last operation may have been started elsewhere
    stream_.reset();
  }
  context_.reset();
  std::shared_ptr<BidiStream> self = std::move(self_);
  registry->ContextDestroyed();
  // `self` may be the last reference: the stream is destroyed here, after its last operation came
  // back. It no longer holds anything of the client's.
}

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_
