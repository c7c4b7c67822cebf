// Cilium's labels and their "labels string", the form identities are keyed by in the kvstore.
#ifndef KVSTORE_CILIUM_LABELS_H_
#define KVSTORE_CILIUM_LABELS_H_

#include <string>
#include <string_view>
#include <vector>

#include "kvstore/export.h"

namespace kvstore::cilium {

inline constexpr std::string_view kLabelSourceUnspec = "unspec";
inline constexpr std::string_view kLabelSourceReserved = "reserved";
inline constexpr std::string_view kLabelSourceK8s = "k8s";

struct KVSTORE_EXPORT Label {
  std::string source;  // "k8s", "reserved", "cidr", ...; never empty once parsed
  std::string key;
  std::string value;
  bool operator==(const Label&) const = default;
};

// Cilium's ParseLabel: "source:key=value". The source ends at the first ':' ("$x" is
// reserved:x; no ':' and "reserved." in front is reserved too; otherwise no source is
// "unspec"); the key ends at the first '=' after it ("reserved:=x" is key x).
KVSTORE_EXPORT Label ParseLabel(std::string_view text);

// The labels string of an identity: "source:key=value;" per label (the '=' even for an empty
// value), ordered by key only (equal keys keep their order), always ending in ';':
// "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;".
KVSTORE_EXPORT std::string FormatLabels(std::vector<Label> labels);

// Cilium's NewLabelArrayFromSortedList: the labels of a labels string, split at each ';',
// each part parsed with ParseLabel, parts with an empty key left out. Order kept as written.
KVSTORE_EXPORT std::vector<Label> ParseLabels(std::string_view labels_string);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_LABELS_H_
