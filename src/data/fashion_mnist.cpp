#include "tailor/data/fashion_mnist.hpp"
#include "tailor/ir/graph_module.hpp"

#include <cstdlib>
#include <filesystem>

#include <torch/torch.h>
#include <zlib.h>

#include "tailor/core/error.hpp"

namespace tailor::data {
namespace {

std::vector<uint8_t> read_gzip(const std::string& path) {
  TAILOR_CHECK(std::filesystem::exists(path), "Fashion-MNIST file '", path,
               "' not found (install Debian's dataset-fashion-mnist or set TAILOR_FASHION_MNIST)");
  gzFile f = gzopen(path.c_str(), "rb");
  TAILOR_CHECK(f, "cannot open '", path, "'");
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  int n = 0;
  while ((n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0) out.insert(out.end(), chunk.begin(), chunk.begin() + n);
  const bool failed = n < 0;
  gzclose(f);
  TAILOR_CHECK(!failed, "'", path, "' is not a readable gzip file");
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | uint32_t(b[at + 3]);
}

}  // namespace

std::string fashion_mnist_root() {
  const char* env = std::getenv("TAILOR_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

Dataset load_fashion_mnist(Split split, const std::string& root, int64_t limit) {
  const std::string prefix = root + "/" + (split == Split::Train ? "train" : "t10k");
  const std::string images_path = prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = prefix + "-labels-idx1-ubyte.gz";
  // Two statements: argument evaluation order is unspecified, and a missing images file must be named first.
  const std::vector<uint8_t> images = read_gzip(images_path);
  const std::vector<uint8_t> labels = read_gzip(labels_path);
  return decode_idx(images, labels, images_path, labels_path, limit);
}

Dataset decode_idx(const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels,
                   const std::string& images_name, const std::string& labels_name, int64_t limit) {
  TAILOR_CHECK(images.size() >= 16 && be32(images, 0) == 2051, "'", images_name, "' is not an IDX image file");
  TAILOR_CHECK(labels.size() >= 8 && be32(labels, 0) == 2049, "'", labels_name, "' is not an IDX label file");
  // Counts are 32-bit each, so their product is checked without multiplying (it can exceed 64 bits).
  const uint64_t n = be32(images, 4), rows = be32(images, 8), cols = be32(images, 12);
  TAILOR_CHECK(rows > 0 && cols > 0, "'", images_name, "' has images of ", rows, " x ", cols, " pixels");
  TAILOR_CHECK(be32(labels, 4) == n, "'", images_name, "' and '", labels_name, "' hold different numbers of items");
  const uint64_t pixels = rows * cols, payload = images.size() - 16;
  TAILOR_CHECK(payload % pixels == 0 && payload / pixels == n, "'", images_name, "' is truncated or too long: ",
               payload, " bytes of pixels for ", n, " images of ", rows, " x ", cols);
  TAILOR_CHECK(labels.size() - 8 == n, "'", labels_name, "' is truncated or too long: ", labels.size() - 8,
               " labels for ", n, " items");
  for (size_t i = 8; i < labels.size(); ++i)
    TAILOR_CHECK(labels[i] < 10, "'", labels_name, "': label ", int(labels[i]), " of item ", i - 8,
                 " is not a Fashion-MNIST class (0-9)");
  const int64_t keep = limit > 0 ? std::min<int64_t>(limit, n) : static_cast<int64_t>(n);
  Dataset d;
  d.images = torch::from_blob(const_cast<uint8_t*>(images.data() + 16),
                              {keep, 1, static_cast<int64_t>(rows), static_cast<int64_t>(cols)}, torch::kUInt8)
                 .to(torch::kFloat)
                 .div_(255.0)
                 .sub_(kFashionMnistMean)
                 .div_(kFashionMnistStd);
  d.labels = torch::from_blob(const_cast<uint8_t*>(labels.data() + 8), {keep}, torch::kUInt8).to(torch::kLong);
  return d;
}

std::vector<Batch> batches(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed, int rank,
                           int world_size) {
  TAILOR_CHECK(batch_size > 0, "batch size must be positive, got ", batch_size);
  TAILOR_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "rank ", rank, " is outside world size ", world_size);
  const int64_t n = data.size();
  torch::Tensor order;
  if (shuffle) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    order = torch::randperm(n, gen, torch::kLong);
  } else {
    order = torch::arange(n, torch::kLong);
  }
  std::vector<Batch> out;
  int64_t index = 0;
  for (int64_t start = 0; start < n; start += batch_size, ++index) {
    if (index % world_size != rank) continue;
    const auto idx = order.slice(0, start, std::min(n, start + batch_size));
    out.push_back({data.images.index_select(0, idx), data.labels.index_select(0, idx)});
  }
  return out;
}

double top1_accuracy(const std::function<at::Tensor(const at::Tensor&)>& predict, const Dataset& data,
                     int64_t batch_size) {
  TAILOR_CHECK(data.size() > 0, "cannot measure accuracy on an empty dataset");
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  for (const Batch& b : batches(data, batch_size, false)) {
    const at::Tensor logits = predict(b.images);
    TAILOR_CHECK(logits.dim() == 2 && logits.size(0) == b.images.size(0), "the model returned shape ",
                 logits.sizes(), " for a batch of ", b.images.size(0), "; expected [batch, classes]");
    correct += logits.argmax(1).eq(b.labels).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

std::vector<at::Tensor> calibration_batches(const std::string& source, const std::vector<int64_t>& input_shape,
                                            int64_t batches, int64_t batch_size, std::vector<at::Tensor>* labels) {
  TAILOR_CHECK(batches > 0 && batch_size > 0, "calibration: the number of batches and the batch size must be positive, got ",
               batches, " and ", batch_size);
  std::vector<at::Tensor> out;
  if (source == "random") {
    TAILOR_CHECK(!input_shape.empty(), "calibration: random data needs the model's input shape");
    std::vector<int64_t> s = input_shape;
    s[0] = batch_size;
    auto gen = at::detail::createCPUGenerator(0);
    for (int64_t b = 0; b < batches; ++b) out.push_back(at::randn(s, gen));
    return out;
  }
  TAILOR_CHECK(source == "fashion-mnist", "unknown calibration data '", source, "'; valid: fashion-mnist, random");
  const Dataset train = load_fashion_mnist(Split::Train, fashion_mnist_root(), batches * batch_size);
  for (const auto& b : data::batches(train, batch_size, false)) {
    out.push_back(b.images);
    if (labels) labels->push_back(b.labels);
  }
  return out;
}

double top1_accuracy(GraphModuleImpl& model, const Dataset& data, int64_t batch_size) {
  model.eval();
  return top1_accuracy(
      [&](const at::Tensor& x) {
        const c10::IValue out = model.run({x});
        return out.isTuple() ? out.toTupleRef().elements().at(0).toTensor() : out.toTensor();
      },
      data, batch_size);
}

}  // namespace tailor::data
