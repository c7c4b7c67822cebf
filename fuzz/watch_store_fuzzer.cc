// Feeds a RestartableWatchStore event streams with arbitrary key and value bytes, over several
// Watch rounds (reconnections) and Drains, and checks what its observer sees against a model of
// the WatchStore contract (SPEC section 7).
//
// Input: one flags byte, then operations until the input ends (see DecodeOperation):
//   flags: bits 0-1 the prefix variant (bit 2 set: the prefix is read from the input instead),
//          bit 3 a key type whose Unmarshal rejects values starting with '!'.
//   op % 8: 0,1 create <name> <value>; 2 modify <name> <value>; 3 delete <name>; 4 list-done;
//           5 end the round (run Watch on the events so far); 6 end the round, then Drain;
//           7 create <name> with a value of (next byte * 64) copies of the byte after.
//   <name>: one byte b; b < 0xc0 picks one of a few fixed names (so that keys collide), else
//           (b & 0x3f) raw bytes follow. <value>: a length byte (mod 64) and raw bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/store_fuzz_keys.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/store/watch_store.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "spdlog/spdlog.h"

namespace kvstore::fuzz {
namespace {

bool Accepted(bool picky, std::string_view value) {
  return !picky || !value.starts_with(kRejectedMarker);
}

struct Call {
  bool update = true;  // false: OnDelete
  std::string name;
  std::string value;
  bool operator==(const Call&) const = default;
};

std::string Describe(const std::vector<Call>& calls) {
  std::string out;
  for (const Call& call : calls) {
    out += call.update ? "\n    update " : "\n    delete ";
    out += Printable(call.name) + " = " + Printable(call.value);
  }
  return out;
}

// Deletes the store emits in one go (stale keys at kListDone, Drain) have no order in the
// contract: runs of consecutive deletes are compared as sets.
void SortDeleteRuns(std::vector<Call>& calls) {
  auto by_name = [](const Call& a, const Call& b) { return a.name < b.name; };
  size_t i = 0;
  while (i < calls.size()) {
    size_t j = i;
    while (j < calls.size() && !calls[j].update) ++j;
    std::sort(calls.begin() + i, calls.begin() + j, by_name);
    i = j == i ? i + 1 : j;
  }
}

// Checks every call as it happens (names are known, deletes carry the last value, NumEntries and
// the entries gauge agree) and records the calls for the comparison with the model.
class CheckingObserver : public store::Observer {
 public:
  void Attach(const store::WatchStore* store, const prometheus::Gauge* entries_gauge) {
    store_ = store;
    entries_gauge_ = entries_gauge;
  }

  void OnUpdate(const store::Key& key) override {
    absl::StatusOr<std::string> value = key.Marshal();
    FUZZ_CHECK(value.ok(), "Marshal of a stored key failed: " + value.status().ToString());
    view_[key.GetKeyName()] = *value;
    calls_.push_back(Call{true, key.GetKeyName(), *value});
    CheckCount();
  }

  void OnDelete(const store::NamedKey& named) override {
    const std::string name = named.GetKeyName();
    auto it = view_.find(name);
    FUZZ_CHECK(it != view_.end(), "OnDelete of a key never announced: " + Printable(name));
    const auto* key = dynamic_cast<const store::Key*>(&named);
    FUZZ_CHECK(key != nullptr, "OnDelete without the last value of " + Printable(name));
    absl::StatusOr<std::string> value = key->Marshal();
    FUZZ_CHECK(value.ok() && *value == it->second,
               "OnDelete of " + Printable(name) + " does not carry its last value");
    calls_.push_back(Call{false, name, it->second});
    view_.erase(it);
    CheckCount();
  }

  const std::map<std::string, std::string>& view() const { return view_; }
  std::vector<Call>& calls() { return calls_; }

 private:
  void CheckCount() const {
    FUZZ_CHECK(store_->NumEntries() == view_.size(),
               "NumEntries " + std::to_string(store_->NumEntries()) + " but the observer knows " +
                   std::to_string(view_.size()) + " keys");
    FUZZ_CHECK(entries_gauge_->Value() == static_cast<double>(view_.size()),
               "entries gauge differs from the number of keys");
  }

  const store::WatchStore* store_ = nullptr;
  const prometheus::Gauge* entries_gauge_ = nullptr;
  std::map<std::string, std::string> view_;
  std::vector<Call> calls_;
};

// Hands every watcher the events of the current round, already buffered and closed: Watch then
// runs on the fuzzer's thread alone and returns once it consumed them.
class ScriptedBackend : public WatchStoreBackend {
 public:
  void SetRound(std::vector<KeyValueEvent> events) { events_ = std::move(events); }
  const std::vector<std::string>& prefixes() const { return prefixes_; }

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t) override {
    prefixes_.emplace_back(prefix);
    auto watcher = std::make_shared<Watcher>(std::string(prefix), events_.size() + 1);
    for (KeyValueEvent event : events_) {
      if (event.type != EventType::kListDone) event.key = std::string(prefix) + event.key;
      FUZZ_CHECK(watcher->Emit(std::move(event), ctx), "a buffered Emit failed");
    }
    watcher->Close();
    return watcher;
  }

 private:
  std::vector<KeyValueEvent> events_;  // keys relative to the prefix
  std::vector<std::string> prefixes_;
};

// The WatchStore contract, applied to the same events: the calls its observer must see.
class Model {
 public:
  explicit Model(bool picky) : picky_(picky) {}

  void StartRound() {
    for (auto& [name, entry] : entries_) entry.stale = true;
  }

  void Apply(const KeyValueEvent& event) {
    switch (event.type) {
      case EventType::kCreate:
      case EventType::kModify:
        // A value that fails to Unmarshal is skipped: the entry (stale or not) stays as it was.
        if (!Accepted(picky_, event.value)) return;
        entries_[event.key] = Entry{event.value, false};
        expected_.push_back(Call{true, event.key, event.value});
        return;
      case EventType::kDelete:
        if (auto it = entries_.find(event.key); it != entries_.end()) {
          expected_.push_back(Call{false, event.key, it->second.value});
          entries_.erase(it);
        }
        return;
      case EventType::kListDone:
        for (auto it = entries_.begin(); it != entries_.end();) {
          if (!it->second.stale) {
            ++it;
            continue;
          }
          expected_.push_back(Call{false, it->first, it->second.value});
          it = entries_.erase(it);
        }
        list_done_seen_ = true;
        return;
    }
  }

  void Drain() {
    for (const auto& [name, entry] : entries_) expected_.push_back(Call{false, name, entry.value});
    entries_.clear();
  }

  size_t NumEntries() const { return entries_.size(); }
  bool list_done_seen() const { return list_done_seen_; }
  std::vector<Call>& expected() { return expected_; }

 private:
  struct Entry {
    std::string value;
    bool stale = false;
  };
  const bool picky_;
  std::map<std::string, Entry> entries_;
  bool list_done_seen_ = false;
  std::vector<Call> expected_;
};

struct Operation {
  enum class Kind { kEvent, kEndRound, kEndRoundAndDrain } kind = Kind::kEvent;
  KeyValueEvent event;
};

Operation DecodeOperation(FuzzInput& in) {
  Operation op;
  switch (in.Byte() % 8) {
    case 0:
    case 1:
      op.event.type = EventType::kCreate;
      op.event.key = DecodeName(in);
      op.event.value = in.Bytes(63);
      break;
    case 2:
      op.event.type = EventType::kModify;
      op.event.key = DecodeName(in);
      op.event.value = in.Bytes(63);
      break;
    case 3:
      op.event.type = EventType::kDelete;
      op.event.key = DecodeName(in);
      break;
    case 4:
      op.event.type = EventType::kListDone;
      break;
    case 5:
      op.kind = Operation::Kind::kEndRound;
      break;
    case 6:
      op.kind = Operation::Kind::kEndRoundAndDrain;
      break;
    case 7: {
      op.event.type = EventType::kCreate;
      op.event.key = DecodeName(in);
      size_t len = size_t{in.Byte()} * 64;
      op.event.value = std::string(len, static_cast<char>(in.Byte()));
      break;
    }
  }
  return op;
}

std::string ExpectedWatchPrefix(std::string_view prefix) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  return std::string(prefix) + "/";
}

void RunOne(FuzzInput& in) {
  const uint8_t flags = in.Byte();
  const std::string prefix = (flags & 4) != 0 ? in.Bytes(24) : std::string(kPrefixes[flags & 3]);
  const bool picky = (flags & 8) != 0;

  // A registry per input: arbitrary prefixes would otherwise pile up label sets.
  prometheus::Registry registry;
  prometheus::Gauge& entries_gauge =
      prometheus::BuildGauge().Name("fuzz_watch_store_entries").Register(registry).Add({});
  auto observer = std::make_shared<CheckingObserver>();
  int sync_callbacks = 0;
  std::unique_ptr<store::WatchStore> store;
  store::RestartableWatchStoreOptions opts;
  opts.entries_metric = &entries_gauge;
  opts.metrics = std::make_shared<store::Metrics>(registry);
  opts.on_sync_callbacks.push_back([&](const Context&) {
    ++sync_callbacks;
    FUZZ_CHECK(store->Synced(), "on-sync callback ran while not synced");
  });
  store::KeyCreator creator = store::KVPairCreator;
  if (picky) creator = [] { return std::make_unique<PickyKey>(); };
  store = store::NewRestartableWatchStore("fuzz", creator, observer, std::move(opts));
  observer->Attach(store.get(), &entries_gauge);

  Model model(picky);
  ScriptedBackend backend;
  std::vector<KeyValueEvent> round;
  size_t rounds = 0;

  auto run_round = [&] {
    model.StartRound();
    for (const KeyValueEvent& event : round) model.Apply(event);
    backend.SetRound(std::move(round));
    round.clear();
    store->Watch(Context::Background(), backend, prefix);
    ++rounds;
    FUZZ_CHECK(backend.prefixes().size() == rounds, "Watch did not call ListAndWatch once");
    FUZZ_CHECK(backend.prefixes().back() == ExpectedWatchPrefix(prefix),
               "ListAndWatch got prefix " + Printable(backend.prefixes().back()) + " for " +
                   Printable(prefix));
    FUZZ_CHECK(!store->Synced(), "still synced after Watch returned");
    FUZZ_CHECK(sync_callbacks == (model.list_done_seen() ? 1 : 0),
               "on-sync callbacks ran " + std::to_string(sync_callbacks) + " times");
    FUZZ_CHECK(store->NumEntries() == model.NumEntries(),
               "NumEntries " + std::to_string(store->NumEntries()) + ", model " +
                   std::to_string(model.NumEntries()));
  };

  while (!in.Empty()) {
    Operation op = DecodeOperation(in);
    if (op.kind == Operation::Kind::kEvent) {
      round.push_back(std::move(op.event));
      continue;
    }
    run_round();
    if (op.kind == Operation::Kind::kEndRoundAndDrain) {
      store->Drain();
      model.Drain();
      FUZZ_CHECK(store->NumEntries() == 0, "keys left after Drain");
    }
  }
  run_round();
  store->Drain();
  model.Drain();
  FUZZ_CHECK(observer->view().empty(), "the observer still knows keys after Drain");

  std::vector<Call>& got = observer->calls();
  std::vector<Call>& want = model.expected();
  SortDeleteRuns(got);
  SortDeleteRuns(want);
  FUZZ_CHECK(got == want, "observer calls differ from the model\n  got:" + Describe(got) +
                              "\n  want:" + Describe(want));
}

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvstore::fuzz::FuzzInput in(data, size);
  kvstore::fuzz::RunOne(in);
  return 0;
}
