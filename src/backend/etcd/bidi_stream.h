// A bidirectional stream (Watch, LeaseKeepAlive) driven by gRPC's callback API: reads and writes
// complete on gRPC threads, so the handlers must not block.
#ifndef KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_
#define KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/etcd/call_registry.h"
#include "backend/etcd/transport.h"

namespace kvstore::etcd {

template <typename Req, typename Resp>
class BidiStream final : public grpc::ClientBidiReactor<Req, Resp>, public RequestStream<Req> {
 public:
  using ReadHandler = Transport::ReadHandler<Resp>;
  using DoneHandler = Transport::DoneHandler;
  // Turns the stream's final gRPC status into the library's (and does whatever else the owner
  // learns from it). Runs on a gRPC thread.
  using Translator =
      std::function<absl::Status(const grpc::Status& status, const grpc::ClientContext& context)>;
  // Binds the reactor to a stub's streaming method: stub->async()->Method(context, reactor).
  using Binder = std::function<void(grpc::ClientContext* context, BidiStream* stream)>;

  // Starts a stream: `prepare` sets its metadata, `bind` attaches it to a stub. Fails when the
  // registry is shut down.
  static absl::StatusOr<std::shared_ptr<BidiStream>> Start(
      CallRegistry* registry, Translator translate, ReadHandler on_read, DoneHandler on_done,
      const std::function<void(grpc::ClientContext*)>& prepare, const Binder& bind);

  void Write(Req request) override;
  void Cancel() override;

 private:
  BidiStream(CallRegistry* registry, Translator translate, ReadHandler on_read, DoneHandler on_done)
      : registry_(registry),
        translate_(std::move(translate)),
        on_read_(std::move(on_read)),
        on_done_(std::move(on_done)) {}

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  void StartNextWriteLocked(std::unique_lock<std::mutex>& lock);

  CallRegistry* const registry_;
  Translator translate_;
  ReadHandler on_read_;
  DoneHandler on_done_;
  // Destroyed in OnDone, not with the stream: it holds a reference to the channel (see
  // CallRegistry). context_mu_ guards the pointer, not the context.
  std::mutex context_mu_;
  std::unique_ptr<grpc::ClientContext> context_ = std::make_unique<grpc::ClientContext>();
  Resp response_;
  std::shared_ptr<BidiStream> self_;  // keeps the reactor alive until OnDone

  std::mutex mu_;  // guards the write state below
  std::deque<Req> pending_writes_;
  Req current_write_;
  bool writing_ = false;
  bool reads_finished_ = false;  // no more writes are started once set
};

template <typename Req, typename Resp>
absl::StatusOr<std::shared_ptr<BidiStream<Req, Resp>>> BidiStream<Req, Resp>::Start(
    CallRegistry* registry, Translator translate, ReadHandler on_read, DoneHandler on_done,
    const std::function<void(grpc::ClientContext*)>& prepare, const Binder& bind) {
  std::shared_ptr<BidiStream> stream(
      new BidiStream(registry, std::move(translate), std::move(on_read), std::move(on_done)));
  grpc::ClientContext* context = stream->context_.get();
  prepare(context);
  if (!registry->Register(context)) return absl::FailedPreconditionError("etcd backend is closed");
  stream->self_ = stream;
  bind(context, stream.get());
  stream->AddHold();
  stream->StartRead(&stream->response_);
  stream->StartCall();
  return stream;
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Write(Req request) {
  std::unique_lock<std::mutex> lock(mu_);
  if (reads_finished_) return;
  pending_writes_.push_back(std::move(request));
  if (!writing_) StartNextWriteLocked(lock);
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Cancel() {
  std::lock_guard<std::mutex> guard(context_mu_);
  if (context_) context_->TryCancel();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::StartNextWriteLocked(std::unique_lock<std::mutex>& lock) {
  current_write_ = std::move(pending_writes_.front());
  pending_writes_.pop_front();
  writing_ = true;
  // The hold taken at start keeps OnDone away until writing_ is false again, so starting the
  // write outside the lock is safe.
  lock.unlock();
  this->StartWrite(&current_write_);
  lock.lock();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok) pending_writes_.clear();  // the stream is broken; reads will report it
  if (reads_finished_) {
    pending_writes_.clear();
    lock.unlock();
    this->RemoveHold();
    return;
  }
  if (!pending_writes_.empty()) StartNextWriteLocked(lock);
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnReadDone(bool ok) {
  if (ok) {
    on_read_(response_);
    this->StartRead(&response_);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  reads_finished_ = true;
  pending_writes_.clear();
  bool release = !writing_;
  lock.unlock();
  if (release) this->RemoveHold();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnDone(const grpc::Status& status) {
  absl::Status translated = translate_(status, *context_);
  DoneHandler on_done = std::move(on_done_);
  on_read_ = nullptr;
  translate_ = nullptr;
  if (on_done) on_done(translated);
  on_done = nullptr;
  CallRegistry* const registry = registry_;
  registry->Unregister(context_.get());
  std::unique_ptr<grpc::ClientContext> context;
  {
    std::lock_guard<std::mutex> guard(context_mu_);
    context = std::move(context_);
  }
  context.reset();
  std::shared_ptr<BidiStream> self = std::move(self_);
  registry->ContextDestroyed();
  // `self` may be the last reference: the reactor is destroyed here, its last use by gRPC. It no
  // longer holds anything of the client's.
}

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_BIDI_STREAM_H_
