// Pruning masks: unstructured magnitude (layer-wise, global), N:M, masks kept through training, gradual schedules.
#include "tailor/prune/prune.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "internal.hpp"
#include "tailor/ir/ops.hpp"

namespace tailor {

// --- masks -------------------------------------------------------------------------------------------------

std::vector<std::string> prunable_weights(const GraphModuleImpl& module) {
  std::vector<std::string> names;
  const Graph& g = module.graph();
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (n.kind != ops::kConv && n.kind != ops::kLinear) continue;
    const Node* w = g.producer(n.inputs[1]);
    if (w && w->kind == ops::kParam && std::find(names.begin(), names.end(), w->s("name")) == names.end())
      names.push_back(w->s("name"));
  }
  return names;
}

std::vector<std::string> prunable_weights(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& p : module.named_parameters(true))
    if (p.value().dim() >= 2) names.push_back(p.key());
  return names;
}


Masks magnitude_masks(const std::map<std::string, torch::Tensor>& weights, double ratio, bool global) {
  check_ratio(ratio, "magnitude pruning");
  torch::NoGradGuard no_grad;
  Masks masks;
  if (!global) {
    for (const auto& [name, w] : weights) {
      auto mask = torch::ones_like(w);
      const int64_t k = count_to_prune(ratio, w.numel());
      if (k > 0) {
        const auto idx = std::get<1>(torch::topk(w.abs().reshape({-1}), k, -1, /*largest=*/false));
        mask.view({-1}).index_fill_(0, idx, 0);
      }
      masks[name] = mask;
    }
    return masks;
  }
  std::vector<torch::Tensor> flat;
  for (const auto& [name, w] : weights) flat.push_back(w.abs().reshape({-1}));
  if (flat.empty()) return masks;
  const auto all = torch::cat(flat);
  auto keep = torch::ones_like(all);
  const int64_t k = count_to_prune(ratio, all.numel());
  if (k > 0) keep.index_fill_(0, std::get<1>(torch::topk(all, k, -1, false)), 0);
  int64_t offset = 0;
  for (const auto& [name, w] : weights) {
    masks[name] = keep.narrow(0, offset, w.numel()).reshape(w.sizes()).clone();
    offset += w.numel();
  }
  return masks;
}

Masks nm_masks(const std::map<std::string, torch::Tensor>& weights, int n, int m) {
  TAILOR_CHECK(m > 0 && n > 0 && n < m, "N:M sparsity needs 0 < N < M, got ", n, ":", m);
  torch::NoGradGuard no_grad;
  Masks masks;
  for (const auto& [name, w] : weights) {
    TAILOR_CHECK(w.dim() >= 2, "N:M sparsity: '", name, "' has ", w.dim(), " dimension(s); it needs a weight matrix");
    TAILOR_CHECK(w.size(1) % m == 0, "N:M sparsity: '", name, "' has ", w.size(1), " inputs, not a multiple of M=", m,
                 "; leave it out or choose another M");
    // [O, I, k...] -> [O, k..., I]: groups of M consecutive inputs at each kernel position.
    std::vector<int64_t> perm = {0};
    for (int64_t d = 2; d < w.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    const auto moved = w.abs().permute(perm).contiguous();
    const auto groups = moved.reshape({-1, m});
    const auto idx = std::get<1>(torch::topk(groups, n, 1, /*largest=*/true));
    auto keep = torch::zeros_like(groups).scatter_(1, idx, 1.0);
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
    masks[name] = keep.reshape(moved.sizes()).permute(inverse).contiguous();
  }
  return masks;
}

double mask_sparsity(const Masks& masks) {
  int64_t zeros = 0, total = 0;
  for (const auto& [name, m] : masks) {
    zeros += (m == 0).sum().item<int64_t>();
    total += m.numel();
  }
  return total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0;
}

void SparsityMasks::attach(torch::nn::Module& module, const Masks& masks) {
  auto params = module.named_parameters(true);
  auto modules = module.named_modules("", true);
  // Validate everything before touching the module.
  for (const auto& [name, mask] : masks) {
    const auto* p = params.find(name);
    if (!p) {
      std::string some;
      int shown = 0;
      for (const auto& q : params) {
        if (shown++ == 6) break;
        some += (some.empty() ? "" : ", ") + q.key();
      }
      TAILOR_FAIL("mask for '", name, "': the module has no such parameter (it has ", some, ", ...)");
    }
    TAILOR_CHECK(p->sizes() == mask.sizes(), "mask for '", name, "' has shape ", shape_to_string(mask.sizes().vec()),
                 ", the weight ", shape_to_string(p->sizes().vec()));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, mask] : masks) {
    torch::Tensor w = params[name];
    const auto dot = name.rfind('.');
    const std::string owner = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string leaf = (dot == std::string::npos ? name : name.substr(dot + 1)) + "_mask";
    torch::nn::Module& m = owner.empty() ? module : *modules[owner];
    torch::Tensor buf = mask.to(w.options()).clone();
    if (m.named_buffers(false).contains(leaf)) {
      m.named_buffers(false)[leaf].copy_(buf);
      buf = m.named_buffers(false)[leaf];
    } else {
      buf = m.register_buffer(leaf, buf);
    }
    w.mul_(buf);
    if (!entries_.count(name)) {
      // The hook reads the buffer itself, so update() changes what it masks.
      w.register_hook([buf](torch::Tensor grad) { return grad * buf; });
    }
    entries_[name] = {w, buf};
    masks_[name] = buf;
  }
}

void SparsityMasks::apply() {
  torch::NoGradGuard no_grad;
  for (auto& [name, e] : entries_) e.weight.mul_(e.mask);
}

void SparsityMasks::update(const Masks& masks) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, mask] : masks) {
    auto it = entries_.find(name);
    TAILOR_CHECK(it != entries_.end(), "update: no mask attached for '", name, "'");
    it->second.mask.copy_(mask);
  }
  apply();
}

double GradualSchedule::sparsity_at(int64_t step) const {
  if (step <= begin) return initial;
  if (step >= end) return final;
  const double t = static_cast<double>(step - begin) / static_cast<double>(end - begin);
  return final + (initial - final) * std::pow(1.0 - t, 3.0);
}

bool GradualSchedule::updates_at(int64_t step) const {
  return step >= begin && step <= end && every > 0 && ((step - begin) % every == 0 || step == end);
}

}  // namespace tailor
