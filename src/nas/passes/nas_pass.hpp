// What the architecture-search passes share (private to src/nas/passes): the held-out validation split, latency
// budget options, and finding the supernet an earlier nas-train wrote.
#pragma once

#include <cstdio>

#include "tailor/nas/nas.hpp"
#include "tailor/pass/pass.hpp"

namespace tailor::nas::detail {

/// The supernet file the last nas-train in `module`'s provenance wrote ("" when none did).
inline std::string supernet_from_provenance(const GraphModuleImpl& module) {
  const auto& records = module.provenance();
  for (auto it = records.rbegin(); it != records.rend(); ++it)
    if (const AttrValue* v = it->stat("supernet"); v && std::holds_alternative<std::string>(*v))
      return std::get<std::string>(*v);
  return "";
}

/// The training split cut into training and validation images (Split::validation judges subnets).
inline Split training_split(int64_t limit, int64_t validation) {
  const auto all = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), limit);
  return split_validation(all, validation);
}

/// One line of search progress on stderr, overwritten in place.
inline void print_search_progress(int done, int total, double seconds_left, const Candidate& last, double best) {
  std::fprintf(stderr, "\r  search: %d/%d subnets, last %.2f%%, best %.2f%%, %.0f s left   ", done, total,
               100 * last.accuracy, 100 * best, seconds_left);
  if (done == total) std::fprintf(stderr, "\n");
}

}  // namespace tailor::nas::detail
