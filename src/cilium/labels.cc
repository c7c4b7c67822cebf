#include "kvstore/cilium/labels.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cilium/go_json.h"

namespace kvstore::cilium {

Label ParseLabel(std::string_view text) {
  Label label;
  std::string_view rest = text;
  if (!text.empty() && text[0] == '$') {
    label.source = kLabelSourceReserved;
    rest = text.substr(1);
  } else if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    label.source = text.substr(0, colon);
    rest = text.substr(colon + 1);
  } else if (text.starts_with("reserved.")) {
    label.source = kLabelSourceReserved;
    rest = text.substr(std::string_view("reserved.").size());
  }
  if (label.source.empty()) label.source = kLabelSourceUnspec;
  const size_t equals = rest.find('=');
  if (equals == std::string_view::npos) {
    label.key = rest;
  } else if (equals == 0 && label.source == kLabelSourceReserved) {
    label.key = rest.substr(1);
  } else {
    label.key = rest.substr(0, equals);
    label.value = rest.substr(equals + 1);
  }
  return label;
}

std::string FormatLabels(std::vector<Label> labels) {
  std::stable_sort(labels.begin(), labels.end(),
                   [](const Label& a, const Label& b) { return a.key < b.key; });
  std::string out;
  for (const Label& label : labels) {
    absl::StrAppend(&out, label.source, ":", label.key, "=", label.value, ";");
  }
  return out;
}

std::vector<Label> ParseLabels(std::string_view labels_string) {
  std::vector<Label> labels;
  for (absl::string_view part : absl::StrSplit(internal::Av(labels_string), ';')) {
    Label label = ParseLabel(internal::Sv(part));
    if (!label.key.empty()) labels.push_back(std::move(label));
  }
  return labels;
}

}  // namespace kvstore::cilium
