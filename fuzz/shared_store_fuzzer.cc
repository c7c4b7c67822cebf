// Runs a SharedStore on the in-memory backend while another client and the store itself write,
// delete and expire keys with arbitrary name and value bytes, then checks that the store's view
// converges to the backend (SPEC section 5): every key the backend holds under the prefix with a
// value the key type accepts is in SharedKeysMap with that value, no other key is (a rejected
// value leaves whatever the store had), local keys deleted behind the store's back come back, the
// observer is never called twice at once and ends with the same view, and Close removes the local
// keys.
//
// Input: one flags byte, then operations until the input ends (see Step):
//   flags: bits 0-1 the prefix variant (bit 2 set: the prefix is read from the input instead),
//          bit 3 a key type whose Unmarshal rejects values starting with '!'.
//   op % 9: 0,1 the other client writes <name> <value>; 2 it deletes <name>;
//           3 UpdateLocalKeySync <name> <value>; 4 DeleteLocalKey <name>;
//           5 UpdateKeySync <name> <value> (lease: next byte & 1); 6 the store's session expires;
//           7 the other client writes a sibling key outside the prefix; 8 a value over the limit.
//   <name>, <value>: as in watch_store_fuzzer.cc.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/store_fuzz_keys.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "spdlog/spdlog.h"

namespace kvstore::fuzz {
namespace {

constexpr auto kConvergeTimeout = std::chrono::seconds(30);
// Written last by the other client; no decoded name is this long without raw bytes.
constexpr char kMarkerName[] = "~all-events-before-this-one";

std::string ValueOf(const store::NamedKey& named) {
  const auto* key = dynamic_cast<const store::Key*>(&named);
  if (key == nullptr) return "";
  absl::StatusOr<std::string> value = key->Marshal();
  FUZZ_CHECK(value.ok(), "Marshal of a stored key failed: " + value.status().ToString());
  return *value;
}

// Keeps the view the observer calls describe; checks that calls never overlap and that deletes
// name keys the store announced (or the fuzzer made local).
class CheckingObserver : public store::Observer {
 public:
  void OnUpdate(const store::Key& key) override {
    Enter();
    {
      std::lock_guard<std::mutex> lock(mu_);
      view_[key.GetKeyName()] = ValueOf(key);
      announced_.insert(key.GetKeyName());
    }
    Leave();
  }

  void OnDelete(const store::NamedKey& key) override {
    Enter();
    {
      std::lock_guard<std::mutex> lock(mu_);
      const std::string name = key.GetKeyName();
      FUZZ_CHECK(announced_.contains(name),
                 "OnDelete of a key never announced: " + Printable(name));
      view_.erase(name);
    }
    Leave();
  }

  // Local keys may be deleted (DeleteLocalKey, Close) before their watch event was handled.
  void AddLocal(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    announced_.insert(name);
  }

  std::map<std::string, std::string> View() const {
    std::lock_guard<std::mutex> lock(mu_);
    return view_;
  }

 private:
  void Enter() { FUZZ_CHECK(!in_call_.exchange(true), "two observer calls at once"); }
  void Leave() { in_call_ = false; }

  std::atomic<bool> in_call_{false};
  mutable std::mutex mu_;  // guards the fields below
  std::map<std::string, std::string> view_;
  std::set<std::string> announced_;
};

std::string Describe(const std::map<std::string, std::string>& view) {
  std::string out = "{";
  for (const auto& [name, value] : view) {
    out += " " + Printable(name) + "=" + Printable(value);
  }
  return out + " }";
}

std::string WatchPrefix(std::string_view prefix) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  return std::string(prefix) + "/";
}

class Run {
 public:
  Run(FuzzInput& in, std::string prefix, bool picky)
      : in_(in), prefix_(std::move(prefix)), watch_prefix_(WatchPrefix(prefix_)), picky_(picky) {}

  void Go() {
    store::Configuration config;
    config.prefix = prefix_;
    config.backend = agent_;
    config.observer = observer_;
    if (picky_) {
      config.key_creator = [] { return std::make_unique<PickyKey>(); };
    } else {
      config.key_creator = store::KVPairCreator;
    }
    absl::StatusOr<std::unique_ptr<store::SharedStore>> joined =
        store::SharedStore::Join(std::move(config));
    if (prefix_.empty()) {
      FUZZ_CHECK(joined.status().code() == absl::StatusCode::kInvalidArgument,
                 "Join with an empty prefix: " + joined.status().ToString());
      return;
    }
    FUZZ_CHECK(joined.ok(), "Join failed: " + joined.status().ToString());
    store_ = *std::move(joined);

    while (!in_.Empty()) Step();
    CheckConverged();
    store_->Close(Context::Background());
    for (const auto& [name, value] : local_) {
      absl::StatusOr<std::optional<std::string>> got =
          other_->Get(Context::Background(), watch_prefix_ + name);
      FUZZ_CHECK(got.ok() && !got->has_value(),
                 "local key " + Printable(name) + " still in the backend after Close");
    }
  }

 private:
  // Whether the watch reports a local key under its own name: path joining drops empty names and
  // leading or trailing slashes.
  bool RoundTrips(const std::string& name) const {
    return JoinPath(prefix_, name) == watch_prefix_ + name;
  }

  bool Accepted(std::string_view value) const {
    return !picky_ || !value.starts_with(kRejectedMarker);
  }

  void Step() {
    const Context ctx;
    switch (in_.Byte() % 9) {
      case 0:
      case 1: {
        std::string name = DecodeName(in_);
        std::string value = in_.Bytes(63);
        absl::Status status = other_->Update(ctx, watch_prefix_ + name, value, false);
        FUZZ_CHECK(status.ok(), "Update failed: " + status.ToString());
        return;
      }
      case 2: {
        absl::Status status = other_->Delete(ctx, watch_prefix_ + DecodeName(in_));
        FUZZ_CHECK(status.ok(), "Delete failed: " + status.ToString());
        return;
      }
      case 3: {
        std::string name = DecodeName(in_);
        store::KVPair key(name, in_.Bytes(63));
        // Known issue (reported): the store accepts a local name that path joining changes ("",
        // "b/", "/b"), remembers it under a name the watch never reports, and then mistakes
        // another key's delete for its own, keeping a deleted key forever. Skipped here so that
        // fuzzing goes on to other bugs; tests/store/bad_input_test.cc keeps the case.
        if (!RoundTrips(name)) return;
        observer_->AddLocal(name);
        absl::Status status = store_->UpdateLocalKeySync(ctx, key);
        FUZZ_CHECK(status.ok(), "UpdateLocalKeySync failed: " + status.ToString());
        local_[name] = key.value;
        return;
      }
      case 4: {
        std::string name = DecodeName(in_);
        store_->DeleteLocalKey(ctx, store::KVPair(name, ""));
        local_.erase(name);
        return;
      }
      case 5: {
        std::string name = DecodeName(in_);
        store::KVPair key(name, in_.Bytes(63));
        bool lease = (in_.Byte() & 1) != 0;
        absl::Status status = store_->UpdateKeySync(ctx, key, lease);
        FUZZ_CHECK(status.ok() || !RoundTrips(name), "UpdateKeySync failed: " + status.ToString());
        return;
      }
      case 6:
        memory_->ExpireSession(*agent_);
        return;
      case 7: {
        std::string sibling = watch_prefix_;
        sibling.back() = '-';
        absl::Status status = other_->Update(ctx, sibling + DecodeName(in_), in_.Bytes(63), false);
        FUZZ_CHECK(status.ok(), "Update failed: " + status.ToString());
        return;
      }
      case 8: {
        std::string name = DecodeName(in_);
        const std::string huge(kMaxValueBytes + 1, 'h');
        absl::Status status = store_->UpdateLocalKeySync(ctx, store::KVPair(name, huge));
        FUZZ_CHECK(
            RoundTrips(name) ? status.code() == absl::StatusCode::kResourceExhausted : !status.ok(),
            "UpdateLocalKeySync of a huge value: " + status.ToString());
        status = other_->Update(ctx, watch_prefix_ + name, huge, false);
        FUZZ_CHECK(status.code() == absl::StatusCode::kResourceExhausted,
                   "Update of a huge value: " + status.ToString());
        return;
      }
    }
  }

  // Empty when the store agrees with the backend, else what differs.
  std::string Difference() const {
    absl::StatusOr<KeyValuePairs> listed = other_->ListPrefix(Context(), watch_prefix_);
    FUZZ_CHECK(listed.ok(), "ListPrefix failed: " + listed.status().ToString());
    std::map<std::string, std::string> backend;
    for (const auto& [key, value] : *listed) {
      backend[key.substr(watch_prefix_.size())] = value.data;
    }
    const std::map<std::string, std::string> seen = StoreView();

    for (const auto& [name, value] : backend) {
      if (!Accepted(value)) continue;  // the store keeps whatever it had
      auto it = seen.find(name);
      if (it == seen.end()) return "store lacks " + Printable(name);
      if (it->second != value) {
        return "store has " + Printable(name) + " = " + Printable(it->second) + ", backend " +
               Printable(value);
      }
    }
    for (const auto& [name, value] : seen) {
      if (!backend.contains(name)) return "store has " + Printable(name) + ", backend does not";
    }
    for (const auto& [name, value] : local_) {
      if (!backend.contains(name)) {
        return "local key " + Printable(name) + " was not re-created";
      }
    }
    return "";
  }

  std::map<std::string, std::string> StoreView() const {
    std::map<std::string, std::string> view;
    for (const auto& [name, key] : store_->SharedKeysMap()) view[name] = ValueOf(*key);
    return view;
  }

  void CheckConverged() {
    // The check skips keys with rejected values, so it could pass before the store handled the
    // last events: a marker written last makes it wait for all of them.
    absl::Status status = other_->Update(Context(), watch_prefix_ + kMarkerName, "marker", false);
    FUZZ_CHECK(status.ok(), "Update of the marker failed: " + status.ToString());
    const auto deadline = std::chrono::steady_clock::now() + kConvergeTimeout;
    std::string difference = Difference();
    while (!difference.empty()) {
      FUZZ_CHECK(std::chrono::steady_clock::now() < deadline,
                 "store did not converge to the backend: " + difference);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      difference = Difference();
    }
    // Observer calls follow the map changes on the same thread: the view catches up too (a
    // re-created local key may still change the map meanwhile).
    while (observer_->View() != StoreView()) {
      FUZZ_CHECK(std::chrono::steady_clock::now() < deadline,
                 "the observer's view " + Describe(observer_->View()) +
                     " differs from SharedKeysMap " + Describe(StoreView()));
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  FuzzInput& in_;
  const std::string prefix_;
  const std::string watch_prefix_;
  const bool picky_;
  std::shared_ptr<memory::InMemoryStore> memory_ = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> agent_ = memory_->NewClient("agent");
  std::shared_ptr<Backend> other_ = memory_->NewClient("other");
  std::shared_ptr<CheckingObserver> observer_ = std::make_shared<CheckingObserver>();
  std::unique_ptr<store::SharedStore> store_;
  std::map<std::string, std::string> local_;  // name -> value, as the store should remember
};

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvstore::fuzz::FuzzInput in(data, size);
  const uint8_t flags = in.Byte();
  const std::string prefix =
      (flags & 4) != 0 ? in.Bytes(24) : std::string(kvstore::fuzz::kPrefixes[flags & 3]);
  kvstore::fuzz::Run run(in, prefix, (flags & 8) != 0);
  run.Go();
  return 0;
}
