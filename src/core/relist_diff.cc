#include "core/relist_diff.h"

#include <utility>

namespace kvstore::internal {
namespace {

SharedValue ToShared(SharedValue value) { return value; }
SharedValue ToShared(std::string_view value) { return std::make_shared<const std::string>(value); }
// Values are owned (moved into events) only when they are not kept.
SharedValue ToShared(OwnedValue&) { return nullptr; }

std::string ToString(const SharedValue& value) { return value ? *value : std::string(); }
std::string ToString(std::string_view value) { return std::string(value); }
// An owned value (OwnedValue) moves into the event, and back when the event was refused.
std::string ToString(OwnedValue& value) { return std::move(value.value); }

void GiveBack(OwnedValue& value, KeyValueEvent& refused) { value.value = std::move(refused.value); }
void GiveBack(const SharedValue&, KeyValueEvent&) {}
void GiveBack(std::string_view, KeyValueEvent&) {}

}  // namespace

KnownKeys::KnownKeys(std::string prefix, bool keep_values)
    : prefix_(std::move(prefix)), keep_values_(keep_values) {}

std::string KnownKeys::Absolute(std::string_view relative) const {
  std::string key;
  key.reserve(prefix_.size() + relative.size());
  key.append(prefix_).append(relative);
  return key;
}

const KnownKeys::Known* KnownKeys::Find(std::string_view key) const {
  auto it = keys_.find(Relative(key));
  return it == keys_.end() ? nullptr : &it->second;
}

template <typename Value>
bool KnownKeys::ApplyPutImpl(std::string_view key, int64_t revision, Value&& value, EmitFn emit) {
  auto it = keys_.find(Relative(key));
  const bool is_new = it == keys_.end();
  KeyValueEvent event{is_new ? EventType::kCreate : EventType::kModify, std::string(key),
                      ToString(value), revision};
  if (!emit(event)) {
    GiveBack(value, event);
    return false;
  }
  Known state{revision, keep_values_ ? ToShared(std::forward<Value>(value)) : nullptr};
  if (is_new) {
    keys_.emplace(std::string(Relative(key)), std::move(state));
  } else {
    it->second = std::move(state);
  }
  return true;
}

bool KnownKeys::ApplyPut(std::string_view key, int64_t revision, SharedValue value, EmitFn emit) {
  return ApplyPutImpl(key, revision, std::move(value), emit);
}

bool KnownKeys::ApplyPut(std::string_view key, int64_t revision, std::string_view value,
                         EmitFn emit) {
  return ApplyPutImpl(key, revision, value, emit);
}

bool KnownKeys::ApplyPut(std::string_view key, int64_t revision, std::string&& value, EmitFn emit) {
  if (keep_values_) return ApplyPutImpl(key, revision, std::string_view(value), emit);
  OwnedValue owned{value};
  return ApplyPutImpl(key, revision, owned, emit);
}

bool KnownKeys::ApplyDelete(std::string_view key, int64_t revision, EmitFn emit) {
  auto it = keys_.find(Relative(key));
  if (it == keys_.end()) return true;  // never reported: nothing to take back
  KeyValueEvent event{EventType::kDelete, std::string(key), ToString(it->second.value), revision};
  if (!emit(event)) return false;
  keys_.erase(it);
  return true;
}

RelistDiff::RelistDiff(KnownKeys& known, int64_t list_revision)
    : known_(known), list_revision_(list_revision) {}

bool RelistDiff::EmitVanishedBefore(const std::string_view* relative_end, EmitFn emit) {
  auto it = known_.keys_.lower_bound(cursor_);
  while (it != known_.keys_.end() && (relative_end == nullptr || it->first < *relative_end)) {
    KeyValueEvent event{EventType::kDelete, known_.Absolute(it->first), ToString(it->second.value),
                        list_revision_};
    if (!emit(event)) {
      cursor_ = it->first;  // the vanished keys before it are forgotten already
      return false;
    }
    it = known_.keys_.erase(it);
  }
  return true;
}

template <typename Value>
bool RelistDiff::ListedImpl(std::string_view key, int64_t mod_revision, Value&& value,
                            EmitFn emit) {
  const std::string_view relative = known_.Relative(key);
  if (!EmitVanishedBefore(&relative, emit)) return false;
  auto it = known_.keys_.find(relative);
  const bool is_new = it == known_.keys_.end();
  if (is_new || it->second.mod_revision != mod_revision) {
    KeyValueEvent event{is_new ? EventType::kCreate : EventType::kModify, std::string(key),
                        ToString(value), mod_revision};
    if (!emit(event)) {
      GiveBack(value, event);
      cursor_.assign(relative);
      return false;
    }
    KnownKeys::Known state{mod_revision,
                           known_.keep_values_ ? ToShared(std::forward<Value>(value)) : nullptr};
    if (is_new) {
      known_.keys_.emplace(std::string(relative), std::move(state));
    } else {
      it->second = std::move(state);
    }
  }
  // The next comparison starts right after `key`.
  cursor_.assign(relative);
  cursor_.push_back('\0');
  return true;
}

bool RelistDiff::Listed(std::string_view key, int64_t mod_revision, SharedValue value,
                        EmitFn emit) {
  return ListedImpl(key, mod_revision, std::move(value), emit);
}

bool RelistDiff::Listed(std::string_view key, int64_t mod_revision, std::string_view value,
                        EmitFn emit) {
  return ListedImpl(key, mod_revision, value, emit);
}

bool RelistDiff::Listed(std::string_view key, int64_t mod_revision, std::string&& value,
                        EmitFn emit) {
  if (known_.keep_values_) return ListedImpl(key, mod_revision, std::string_view(value), emit);
  OwnedValue owned{value};
  return ListedImpl(key, mod_revision, owned, emit);
}

bool RelistDiff::Finish(EmitFn emit) { return EmitVanishedBefore(nullptr, emit); }

}  // namespace kvstore::internal
