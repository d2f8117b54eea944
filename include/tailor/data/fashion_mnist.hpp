// tailor/data/fashion_mnist.hpp: Debian's Fashion-MNIST (package dataset-fashion-mnist) as tensors,
// batches over them, and top-1 accuracy. Images are N x 1 x 28 x 28 floats scaled to [0, 1] and then
// normalized with mean 0.2860 and std 0.3530, as PyTorch's examples do; labels are int64 0-9.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tailor::data {

inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;

enum class Split { Train, Test };

struct Dataset {
  at::Tensor images;  ///< float32 [N, 1, 28, 28], normalized
  at::Tensor labels;  ///< int64 [N]
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// The folder holding the gzipped IDX files: $TAILOR_FASHION_MNIST if set, else
/// /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_root();

/// Reads one split (60,000 training or 10,000 test images); `limit` > 0 keeps the first `limit`.
/// Errors name the missing or malformed file.
Dataset load_fashion_mnist(Split split, const std::string& root = fashion_mnist_root(), int64_t limit = -1);
/// The same from the decompressed bytes of an IDX image file and an IDX label file; the names are for errors.
Dataset decode_idx(const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels,
                   const std::string& images_name, const std::string& labels_name, int64_t limit = -1);

struct Batch {
  at::Tensor images;
  at::Tensor labels;
};

/// Splits a dataset into batches, shuffled with `seed` when `shuffle` is set. Ranks take every
/// `world_size`-th batch starting at `rank` (for data-parallel training).
std::vector<Batch> batches(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed = 0,
                           int rank = 0, int world_size = 1);

/// Top-1 accuracy (0..1) of `predict` (logits [B, classes]) over the dataset, in eval batches, no grad.
double top1_accuracy(const std::function<at::Tensor(const at::Tensor&)>& predict, const Dataset& data,
                     int64_t batch_size = 256);

}  // namespace tailor::data
namespace tailor {
class GraphModuleImpl;
}
namespace tailor::data {

/// Top-1 of a model's first output (its main head, when it also returns early exits or auxiliary heads), in eval
/// mode without gradients.
double top1_accuracy(GraphModuleImpl& model, const Dataset& data, int64_t batch_size = 256);

/// Calibration batches for passes that calibrate or take gradients: the first training images (and labels,
/// when `labels` is given) of `source` "fashion-mnist", or seeded Gaussian noise of `input_shape` (batch
/// replaced) for "random", for models that only need ranges of the right order. Other sources fail listing both.
std::vector<at::Tensor> calibration_batches(const std::string& source, const std::vector<int64_t>& input_shape,
                                            int64_t batches, int64_t batch_size,
                                            std::vector<at::Tensor>* labels = nullptr);

}  // namespace tailor::data
