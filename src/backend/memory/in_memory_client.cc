#include "backend/memory/in_memory_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/write_checks.h"

namespace kvstore::memory::internal {
InMemoryClient::InMemoryClient(std::shared_ptr<InMemoryStore> store,
                               std::shared_ptr<InMemoryServer> server, std::string name)
    : store_(std::move(store)),
      server_(std::move(server)),
      name_(std::move(name)),
      observers_(std::make_shared<LeaseObservers>()),
      session_id_(server_->OpenSession(name_, observers_)) {}

InMemoryClient::~InMemoryClient() { Close(); }

absl::Status InMemoryClient::ClosedError() const {
  return absl::FailedPreconditionError(
      absl::StrCat("in-memory client ", name_.empty() ? "" : "\"" + name_ + "\" ", "is closed"));
}

absl::Status InMemoryClient::CheckUsable(const Context& ctx) const {
  if (ctx.Done()) return ctx.Err();
  if (closed_.load()) return ClosedError();
  return absl::OkStatus();
}

absl::Status InMemoryClient::CheckWrite(const Context& ctx, std::string_view key,
                                        std::string_view value) const {
  if (absl::Status status = CheckUsable(ctx); !status.ok()) return status;
  return kvstore::internal::CheckWrite(key, value);
}

absl::Status InMemoryClient::Update(const Context& ctx, std::string_view key,
                                    std::string_view value, bool lease) {
  if (absl::Status status = CheckWrite(ctx, key, value); !status.ok()) return status;
  absl::StatusOr<bool> wrote = server_->Put(session_id_, key, value, lease, PutMode::kAlways);
  if (!wrote.ok()) return ClosedError();
  return absl::OkStatus();
}

absl::StatusOr<bool> InMemoryClient::UpdateIfDifferent(const Context& ctx, std::string_view key,
                                                       std::string_view value, bool lease) {
  if (absl::Status status = CheckWrite(ctx, key, value); !status.ok()) return status;
  absl::StatusOr<bool> wrote = server_->Put(session_id_, key, value, lease, PutMode::kIfDifferent);
  if (!wrote.ok()) return ClosedError();
  return wrote;
}

absl::StatusOr<bool> InMemoryClient::CreateOnly(const Context& ctx, std::string_view key,
                                                std::string_view value, bool lease) {
  if (absl::Status status = CheckWrite(ctx, key, value); !status.ok()) return status;
  absl::StatusOr<bool> wrote = server_->Put(session_id_, key, value, lease, PutMode::kCreateOnly);
  if (!wrote.ok()) return ClosedError();
  return wrote;
}

absl::Status InMemoryClient::Delete(const Context& ctx, std::string_view key) {
  if (absl::Status status = CheckUsable(ctx); !status.ok()) return status;
  if (absl::Status status = kvstore::internal::CheckKeyNotEmpty(key); !status.ok()) return status;
  if (kvstore::internal::CannotExist(key)) return absl::OkStatus();
  server_->Delete(key);
  return absl::OkStatus();
}

absl::Status InMemoryClient::DeletePrefix(const Context& ctx, std::string_view prefix) {
  if (absl::Status status = CheckUsable(ctx); !status.ok()) return status;
  server_->DeletePrefix(prefix);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> InMemoryClient::Get(const Context& ctx,
                                                               std::string_view key) {
  if (absl::Status status = CheckUsable(ctx); !status.ok()) return status;
  if (absl::Status status = kvstore::internal::CheckKeyNotEmpty(key); !status.ok()) return status;
  if (kvstore::internal::CannotExist(key)) return std::nullopt;
  return server_->Get(key);
}

absl::StatusOr<KeyValuePairs> InMemoryClient::ListPrefix(const Context& ctx,
                                                         std::string_view prefix) {
  if (absl::Status status = CheckUsable(ctx); !status.ok()) return status;
  return server_->ListPrefix(prefix);
}

void InMemoryClient::RegisterLeaseExpiredObserver(std::string_view prefix,
                                                  std::function<void(std::string_view key)> fn) {
  observers_->Register(prefix, std::move(fn));
}

std::shared_ptr<Watcher> InMemoryClient::ListAndWatch(const Context& ctx, std::string_view prefix,
                                                      size_t capacity) {
  // A closed client's session refuses the watch, which then closes at once.
  return server_->ListAndWatch(session_id_, ctx, prefix, capacity);
}

BackendStatus InMemoryClient::Status() const {
  if (closed_.load()) return BackendStatus{BackendState::kClosed, "in-memory store: client closed"};
  return BackendStatus{BackendState::kOk, server_->StatusLine(session_id_)};
}

void InMemoryClient::Close() {
  if (closed_.exchange(true)) return;
  observers_->Disable();
  server_->CloseSession(session_id_);
}

}  // namespace kvstore::memory::internal
