// The weight-sharing supernet: storage at the largest configuration, slicing by name, the dynamic forward of
// both families, sandwich-rule training, batch-norm re-estimation and subnet extraction.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <random>
#include <set>

#include <torch/torch.h>

#include "tailor/capture/archive.hpp"
#include "tailor/export/export.hpp"
#include "tailor/core/error.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/nas/nas.hpp"

namespace tailor::nas {
namespace F = torch::nn::functional;
using models::ArchConfig;
using models::SearchSpace;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string sanitize(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// Checks that every configuration of the space can share one set of weights.
void check_shareable(const SearchSpace& space) {
  TAILOR_CHECK(space.family == "resnet" || space.family == "mobilenet", "search space '", space.name,
               "': a supernet needs the resnet or mobilenet family, not '", space.family, "'");
  TAILOR_CHECK(!space.stages.empty(), "search space '", space.name, "' has no stages");
  const bool small = space.resolutions.front() <= 32;
  for (int64_t r : space.resolutions)
    TAILOR_CHECK((r <= 32) == small, "search space '", space.name, "': resolutions ", space.resolutions.front(), " and ",
                 r, " need different stems (32 and below use the small-input stem), so they cannot share weights");
  for (size_t i = 0; i < space.stages.size(); ++i) {
    const auto& e = space.stages[i].expands;
    const bool ones = std::count(e.begin(), e.end(), 1) > 0;
    TAILOR_CHECK(!ones || e.size() == 1, "search space '", space.name, "' stage ", i + 1, ": expansion 1 ",
                 space.family == "resnet" ? "(basic blocks) and bottlenecks" : "(no expansion layer) and expansions",
                 " cannot share weights; give one kind per stage");
    for (int64_t k : space.stages[i].kernels)
      TAILOR_CHECK(k % 2 == 1 && k >= 1, "search space '", space.name, "' stage ", i + 1, ": kernel ", k,
                   " is not an odd size");
  }
}

// The dynamic forward of one configuration, reading every weight through the supernet's slicing.
class Runner {
 public:
  Runner(const SupernetImpl& net, const ArchConfig& a, bool training) : net_(net), a_(a), training_(training) {}

  torch::Tensor resnet(torch::Tensor x) const {
    const bool small = a_.resolution <= 32;
    const int64_t in_ch = x.size(1);
    x = torch::relu(bn(conv(x, "conv1", a_.stem, in_ch, small ? 3 : 7, small ? 1 : 2), "bn1", a_.stem));
    if (!small) x = torch::max_pool2d(x, 3, 2, 1);
    int64_t in = a_.stem;
    for (size_t s = 0; s < a_.stages.size(); ++s) {
      const auto& st = a_.stages[s];
      for (int64_t b = 0; b < st.depth; ++b) {
        const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
        const int64_t stride = b == 0 ? st.stride : 1;
        const int64_t out_ch = st.width * st.expand;
        torch::Tensor y;
        if (st.expand == 1) {
          y = torch::relu(bn(conv(x, p + "conv1", st.width, in, st.kernel, stride), p + "bn1", st.width));
          y = bn(conv(y, p + "conv2", st.width, st.width, st.kernel, 1), p + "bn2", st.width);
        } else {
          y = torch::relu(bn(conv(x, p + "conv1", st.width, in, 1, 1), p + "bn1", st.width));
          y = torch::relu(bn(conv(y, p + "conv2", st.width, st.width, st.kernel, stride), p + "bn2", st.width));
          y = bn(conv(y, p + "conv3", out_ch, st.width, 1, 1), p + "bn3", out_ch);
        }
        const bool project = stride != 1 || in != out_ch;
        const torch::Tensor shortcut =
            project ? bn(conv(x, p + "downsample.0", out_ch, in, 1, stride), p + "downsample.1", out_ch) : x;
        x = torch::relu(y + shortcut);
        in = out_ch;
      }
    }
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return linear(x, "fc", in);
  }

  torch::Tensor mobilenet(torch::Tensor x) const {
    const bool small = a_.resolution <= 32;
    const int64_t in_ch = x.size(1);
    x = relu6(bn(conv(x, "features.0.0", a_.stem, in_ch, 3, small ? 1 : 2), "features.0.1", a_.stem));
    int64_t in = a_.stem, j = 1;
    for (const auto& st : a_.stages)
      for (int64_t b = 0; b < st.depth; ++b, ++j) {
        const std::string p = "features." + std::to_string(j) + ".conv.";
        const int64_t stride = b == 0 ? st.stride : 1;
        const int64_t hidden = in * st.expand;
        torch::Tensor h = x;
        int k = 0;
        if (st.expand != 1) {
          h = relu6(bn(conv(h, p + "0.0", hidden, in, 1, 1), p + "0.1", hidden));
          k = 1;
        }
        h = relu6(bn(conv(h, p + std::to_string(k) + ".0", hidden, hidden, st.kernel, stride, hidden),
                     p + std::to_string(k) + ".1", hidden));
        h = bn(conv(h, p + std::to_string(k + 1), st.width, hidden, 1, 1), p + std::to_string(k + 2), st.width);
        x = stride == 1 && in == st.width ? x + h : h;
        in = st.width;
      }
    const std::string head = "features." + std::to_string(j);
    x = relu6(bn(conv(x, head + ".0", a_.head, in, 1, 1), head + ".1", a_.head));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    x = F::dropout(x, F::DropoutFuncOptions().p(0.2).training(training_));
    return linear(x, "classifier.1", a_.head);
  }

 private:
  torch::Tensor t(const std::string& name, std::vector<int64_t> shape) const {
    return net_.subnet_tensor(a_, name, shape);
  }
  torch::Tensor conv(const torch::Tensor& x, const std::string& name, int64_t out, int64_t in, int64_t k,
                     int64_t stride, int64_t groups = 1) const {
    return torch::conv2d(x, t(name + ".weight", {out, in / groups, k, k}), {}, stride, (k - 1) / 2, 1, groups);
  }
  torch::Tensor bn(const torch::Tensor& x, const std::string& name, int64_t c) const {
    return torch::batch_norm(x, t(name + ".weight", {c}), t(name + ".bias", {c}), t(name + ".running_mean", {c}),
                             t(name + ".running_var", {c}), training_, 0.1, 1e-5, false);
  }
  torch::Tensor linear(const torch::Tensor& x, const std::string& name, int64_t in) const {
    const int64_t classes = net_.space().classes;
    return torch::linear(x, t(name + ".weight", {classes, in}), t(name + ".bias", {classes}));
  }
  static torch::Tensor relu6(const torch::Tensor& x) { return torch::hardtanh(x, 0, 6); }

  const SupernetImpl& net_;
  const ArchConfig& a_;
  bool training_;
};

}  // namespace

SearchSpace load_space(const std::string& name_or_file) {
  if (std::filesystem::is_regular_file(name_or_file)) {
    std::ifstream in(name_or_file);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      return SearchSpace::from_json(ss.str());
    } catch (const Error& e) {
      TAILOR_FAIL("search space file '", name_or_file, "': ", e.message());
    }
  }
  return SearchSpace::named(name_or_file);
}

SupernetImpl::SupernetImpl(SearchSpace space, uint64_t seed) : space_(std::move(space)) {
  check_shareable(space_);
  largest_ = space_.largest();
  // The largest network's tensors, named as make_arch names them, are the storage.
  models::ZooModel z = models::make_arch(largest_, space_.zoo_options(seed));
  for (const auto& item : z.module->named_parameters()) add_tensor(item.key(), item.value().detach().clone(), false);
  for (const auto& item : z.module->named_buffers()) add_tensor(item.key(), item.value().detach().clone(), true);
  if (space_.family == "resnet") {
    // The first block of a stage needs a projection shortcut whenever a configuration changes width or stride,
    // even where the largest one does not.
    int64_t in = largest_.stem;
    for (size_t s = 0; s < largest_.stages.size(); ++s) {
      const auto& st = largest_.stages[s];
      const std::string p = "layer" + std::to_string(s + 1) + ".0.downsample.";
      const int64_t out = st.width * st.expand;
      if (!tensors_.count(p + "0.weight")) {
        torch::Tensor w = torch::empty({out, in, 1, 1});
        torch::nn::init::kaiming_normal_(w, 0, torch::kFanOut, torch::kReLU);
        add_tensor(p + "0.weight", w, false);
        add_tensor(p + "1.weight", torch::ones({out}), false);
        add_tensor(p + "1.bias", torch::zeros({out}), false);
        add_tensor(p + "1.running_mean", torch::zeros({out}), true);
        add_tensor(p + "1.running_var", torch::ones({out}), true);
        add_tensor(p + "1.num_batches_tracked", torch::zeros({}, torch::kLong), true);
      }
      in = out;
    }
  } else {
    int64_t j = 1;
    for (const auto& st : largest_.stages) {
      first_block_.push_back(j);
      j += st.depth;
    }
    first_block_.push_back(j);  // the head
  }
  // Kernel transforms: for every stored kernel larger than its stage's smallest choice, one matrix per size
  // step down (7 -> 5, 5 -> 3), starting as identity so that a sub-kernel starts as the plain centre.
  auto transforms = std::make_shared<torch::nn::Module>();
  for (const auto& [name, w] : tensors_) {
    if (w.dim() != 4 || w.size(2) < 3) continue;
    const int s = stage_of(name);
    if (s < 0) continue;
    const auto& kernels = space_.stages[static_cast<size_t>(s)].kernels;
    const int64_t smallest = *std::min_element(kernels.begin(), kernels.end());
    for (int64_t k = w.size(2); k > smallest; k -= 2) {
      const int64_t n = (k - 2) * (k - 2);
      torch::Tensor m = transforms->register_parameter(sanitize(name) + "_" + std::to_string(k) + "to" +
                                                           std::to_string(k - 2), torch::eye(n));
      transforms_[name + "@" + std::to_string(k)] = m;
    }
  }
  register_module("kernel_transforms", transforms);
}

void SupernetImpl::add_tensor(const std::string& dotted, torch::Tensor value, bool buffer) {
  torch::nn::Module* owner = this;
  size_t start = 0;
  for (size_t dot = dotted.find('.'); dot != std::string::npos; dot = dotted.find('.', start)) {
    const std::string part = dotted.substr(start, dot - start);
    auto children = owner->named_children();
    if (!children.contains(part)) owner->register_module(part, std::make_shared<torch::nn::Module>());
    owner = owner->named_children()[part].get();
    start = dot + 1;
  }
  const std::string leaf = dotted.substr(start);
  tensors_[dotted] = buffer ? owner->register_buffer(leaf, value) : owner->register_parameter(leaf, value);
}

int SupernetImpl::stage_of(const std::string& stored) const {
  if (space_.family == "resnet") {
    if (!starts_with(stored, "layer")) return -1;
    return std::stoi(stored.substr(5, stored.find('.') - 5)) - 1;
  }
  if (!starts_with(stored, "features.")) return -1;
  const int64_t j = std::stoll(stored.substr(9, stored.find('.', 9) - 9));
  for (size_t s = 0; s + 1 < first_block_.size(); ++s)
    if (j >= first_block_[s] && j < first_block_[s + 1]) return static_cast<int>(s);
  return -1;
}

std::string SupernetImpl::stored_name(const ArchConfig& config, const std::string& name) const {
  if (space_.family == "resnet" || !starts_with(name, "features.")) return name;
  const size_t dot = name.find('.', 9);
  const int64_t j = std::stoll(name.substr(9, dot - 9));
  const std::string rest = dot == std::string::npos ? "" : name.substr(dot);
  if (j == 0) return name;
  int64_t first = 1;
  for (size_t s = 0; s < config.stages.size(); ++s) {
    if (j < first + config.stages[s].depth) return "features." + std::to_string(first_block_[s] + j - first) + rest;
    first += config.stages[s].depth;
  }
  return "features." + std::to_string(first_block_.back()) + rest;  // the head
}

torch::Tensor SupernetImpl::subnet_tensor(const ArchConfig& config, const std::string& name,
                                          const std::vector<int64_t>& shape) const {
  const std::string stored = stored_name(config, name);
  auto it = tensors_.find(stored);
  TAILOR_CHECK(it != tensors_.end(), "supernet of '", space_.name, "' has no tensor '", stored, "' (for '", name,
               "' of ", config.str(), ")");
  torch::Tensor w = it->second;
  TAILOR_CHECK(w.dim() == static_cast<int64_t>(shape.size()), "supernet tensor '", stored, "' has ", w.dim(),
               " dimensions; ", name, " of ", config.str(), " needs ", shape.size());
  const int64_t spatial_from = w.dim() == 4 ? 2 : w.dim();
  for (int64_t d = 0; d < spatial_from; ++d) {
    TAILOR_CHECK(shape[d] <= w.size(d), "supernet tensor '", stored, "' is ", w.sizes(), "; ", name, " of ",
                 config.str(), " needs ", c10::IntArrayRef(shape));
    if (shape[d] < w.size(d)) w = w.narrow(d, 0, shape[d]);
  }
  if (w.dim() == 4) {
    TAILOR_CHECK(shape[2] == shape[3] && shape[2] <= w.size(2) && (w.size(2) - shape[2]) % 2 == 0,
                 "supernet tensor '", stored, "' has a ", w.size(2), "x", w.size(3), " kernel; ", name, " of ",
                 config.str(), " needs ", shape[2], "x", shape[3]);
    for (int64_t k = w.size(2); k > shape[2]; k -= 2) {
      w = w.narrow(2, 1, k - 2).narrow(3, 1, k - 2);
      auto m = transforms_.find(stored + "@" + std::to_string(k));
      if (m == transforms_.end()) continue;  // a size no configuration asks for through this layer
      const auto sizes = w.sizes().vec();
      w = torch::matmul(w.reshape({-1, (k - 2) * (k - 2)}), m->second).view(sizes);
    }
  }
  return w;
}

torch::Tensor SupernetImpl::forward(const torch::Tensor& input, const ArchConfig& config) {
  const std::string why = space_.why_not(config);
  TAILOR_CHECK(why.empty(), "architecture ", config.str(), " is not in search space '", space_.name, "': ", why);
  TAILOR_CHECK(input.dim() == 4 && input.size(1) == space_.in_channels, "supernet of '", space_.name,
               "' takes [batch, ", space_.in_channels, ", H, W] images, got ", input.sizes());
  Runner run(*this, config, is_training());
  return space_.family == "resnet" ? run.resnet(input) : run.mobilenet(input);
}

GraphModule SupernetImpl::extract(const ArchConfig& config) const {
  const std::string why = space_.why_not(config);
  TAILOR_CHECK(why.empty(), "architecture ", config.str(), " is not in search space '", space_.name, "': ", why);
  GraphModule m = models::capture_arch(config, space_.zoo_options());
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : m->tensors()) {
    if (t.dim() == 0) {  // num_batches_tracked
      auto it = tensors_.find(stored_name(config, name));
      if (it != tensors_.end()) m->set_tensor(name, it->second.detach().clone());
      continue;
    }
    m->set_tensor(name, subnet_tensor(config, name, t.sizes().vec()).detach().clone());
  }
  m->eval();
  return m;
}

void SupernetImpl::save(const std::string& file) const {
  torch::serialize::OutputArchive archive;
  archive.write("tailor_supernet_space", c10::IValue(space_.to_json()));
  torch::nn::Module::save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(file, bytes.str());
}

std::shared_ptr<SupernetImpl> SupernetImpl::load(const std::string& file) {
  TAILOR_CHECK(std::filesystem::exists(file), "supernet file '", file, "' does not exist");
  torch::serialize::InputArchive archive;
  try {
    check_archive(file);
    archive.load_from(file);
  } catch (const c10::Error& e) {
    TAILOR_FAIL("supernet file '", file, "' cannot be read: ", e.what_without_backtrace());
  }
  c10::IValue space_json;
  TAILOR_CHECK(archive.try_read("tailor_supernet_space", space_json) && space_json.isString(), "file '", file,
               "' is not a tailor supernet (no search space in it)");
  auto net = std::make_shared<SupernetImpl>(SearchSpace::from_json(space_json.toStringRef()));
  try {
    net->torch::nn::Module::load(archive);
  } catch (const c10::Error& e) {
    TAILOR_FAIL("supernet file '", file, "' does not match its search space: ", e.what_without_backtrace());
  }
  return net;
}

// ------------------------------------------------------------------------------------------------- training

train::TrainResult train_supernet(Supernet& supernet, const data::Dataset& train_set, const data::Dataset* eval,
                                  const SupernetTrainOptions& options) {
  TAILOR_CHECK(options.random_subnets >= 0, "random_subnets must be >= 0, got ", options.random_subnets);
  TAILOR_CHECK(options.temperature > 0, "temperature must be positive, got ", options.temperature);
  const SearchSpace& space = supernet->space();
  const ArchConfig largest = space.largest(), smallest = space.smallest();
  train::Model model;
  model.module = supernet.ptr();
  model.name = "supernet " + space.name;
  SupernetImpl* net = supernet.get();
  model.forward = [net, largest](const torch::Tensor& x, const std::vector<std::string>& taps) {
    TAILOR_CHECK(taps.empty(), "a supernet has no taps");
    return std::make_pair(net->forward(x, largest), std::map<std::string, torch::Tensor>{});
  };
  train::TrainOptions o = options.train;
  const uint64_t seed = o.seed;
  const int random_subnets = options.random_subnets;
  const double temperature = options.temperature;
  o.objective = [=](const torch::Tensor& x, const torch::Tensor& labels, int64_t step) {
    // The sandwich rule with in-place distillation (BigNAS): the largest subnet learns from the labels, the
    // smallest and a few random ones from the largest's predictions of the same batch.
    torch::Tensor logits = net->forward(x, largest);
    torch::Tensor loss = F::cross_entropy(logits, labels);
    const torch::Tensor soft = logits.detach();
    std::mt19937_64 rng(seed * 7919ULL + static_cast<uint64_t>(step));
    std::vector<ArchConfig> others{smallest};
    for (int i = 0; i < random_subnets; ++i) others.push_back(space.sample(rng));
    for (const ArchConfig& c : others) loss = loss + train::kd_loss(net->forward(x, c), soft, temperature);
    return loss;
  };
  return train::fit(model, nullptr, train_set, eval, o);
}

// ----------------------------------------------------------------------------------------------- evaluation

void recalibrate_batch_norm(GraphModuleImpl& module, const data::Dataset& data, int64_t batches, int64_t batch_size) {
  TAILOR_CHECK(batches > 0 && batch_size > 0, "batch-norm re-estimation needs positive batches and batch size");
  TAILOR_CHECK(data.size() > 0, "batch-norm re-estimation: the data is empty");
  const Graph& g = module.graph();
  struct Layer {
    int input;
    std::string mean, var;
  };
  std::vector<Layer> layers;
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (n.kind != ops::kBatchNorm) continue;
    const Node* mean = g.producer(n.inputs[3]);
    const Node* var = g.producer(n.inputs[4]);
    if (!mean || !var || mean->kind != ops::kParam || var->kind != ops::kParam) continue;
    layers.push_back({n.inputs[0], mean->s("name"), var->s("name")});
  }
  if (layers.empty()) return;
  std::vector<int> values;
  for (const auto& l : layers) values.push_back(l.input);
  std::vector<torch::Tensor> mean_sum(layers.size()), var_sum(layers.size());
  const bool was_training = module.is_training();
  // In training mode each batch norm normalizes by its batch's statistics, as the subnet was trained; the
  // running statistics become the average of those over the batches.
  module.train();
  torch::NoGradGuard no_grad;
  int64_t done = 0;
  for (int64_t start = 0; done < batches && start < data.size(); start += batch_size, ++done) {
    const auto x = data.images.slice(0, start, std::min(data.size(), start + batch_size));
    auto taps = module.run_with_value_taps({x}, values).second;
    for (size_t i = 0; i < layers.size(); ++i) {
      const torch::Tensor& a = taps.at(layers[i].input);
      std::vector<int64_t> dims{0};
      for (int64_t d = 2; d < a.dim(); ++d) dims.push_back(d);
      const torch::Tensor m = a.mean(dims), v = a.var(dims, /*unbiased=*/true);
      mean_sum[i] = mean_sum[i].defined() ? mean_sum[i] + m : m;
      var_sum[i] = var_sum[i].defined() ? var_sum[i] + v : v;
    }
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    module.set_tensor(layers[i].mean, mean_sum[i] / static_cast<double>(done));
    module.set_tensor(layers[i].var, var_sum[i] / static_cast<double>(done));
  }
  if (!was_training) module.eval();
}

Split split_validation(const data::Dataset& train, int64_t validation_size) {
  TAILOR_CHECK(validation_size > 0 && validation_size < train.size(), "the validation split (", validation_size,
               " images) must be positive and smaller than the training data (", train.size(), " images)");
  const int64_t keep = train.size() - validation_size;
  Split s;
  s.train.images = train.images.slice(0, 0, keep);
  s.train.labels = train.labels.slice(0, 0, keep);
  s.validation.images = train.images.slice(0, keep);
  s.validation.labels = train.labels.slice(0, keep);
  return s;
}

GraphModule subnet(const Supernet& supernet, const ArchConfig& config, const data::Dataset& train_set,
                   int64_t calibration_batches, const std::string& supernet_file) {
  GraphModule m = supernet->extract(config);
  if (calibration_batches > 0) recalibrate_batch_norm(*m, train_set, calibration_batches);
  PassRecord r;
  r.pass = "subnet{config=\"" + config.str() + "\"}";
  r.changed = true;
  r.stats.emplace_back("supernet", supernet_file);
  r.stats.emplace_back("space", supernet->space().name);
  r.stats.emplace_back("config", config.str());
  r.stats.emplace_back("calibration_batches", calibration_batches);
  m->mutable_provenance().push_back(r);
  return m;
}

Evaluator supernet_evaluator(Supernet supernet, const data::Dataset& train_set, const data::Dataset& validation,
                             int64_t calibration_batches) {
  return [=](const ArchConfig& config) {
    GraphModule m = subnet(supernet, config, train_set, calibration_batches);
    train::Model model = train::as_model(m, config.str());
    return train::accuracy(model, validation);
  };
}

}  // namespace tailor::nas
