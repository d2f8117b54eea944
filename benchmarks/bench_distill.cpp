// Knowledge distillation, measured on Fashion-MNIST with the library's Trainer.
//
//   bench_distill [--seeds 3] [--teacher-epochs 4] [--teacher-limit 60000] [--epochs 3] [--finetune 2]
//                 [--limit 20000] [--width 0.3125] [--temperature 2] [--alpha 0.7] [--teacher-file F]
//
// One teacher (fashion-resnet, width 1) is trained on the first `teacher-limit` training images; a weak
// teacher (a few epochs on a subset) mostly teaches its own mistakes. Then per seed, on the first `limit`
// training images:
//  1. a student (fashion-resnet at --width, about 10x fewer MACs) is trained `epochs` epochs on the labels
//     alone, and the same student (same initial weights) is distilled from the teacher with the same budget;
//  2. the teacher is channel-pruned by 50% and recovered for `finetune` epochs by plain fine-tuning and, from
//     the same pruned weights, by distillation from the unpruned teacher.
// Top-1 on the 10,000 test images; mean +- std over seeds.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <tailor/tailor.hpp>
#include <tailor/train/train.hpp>

#include "trainer.hpp"

using namespace tailor;
namespace tr = tailor::train;

using tailor::bench::mean;
using tailor::bench::stdev;

int main(int argc, char** argv) try {
  int seeds = 3, teacher_epochs = 4, epochs = 3, finetune = 2;
  int64_t limit = 20000, teacher_limit = 60000;
  std::string teacher_file;  // loaded when it exists, else written after training (reuse across runs)
  double width = 0.3125, temperature = 2.0, alpha = 0.7;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      TAILOR_CHECK(i + 1 < argc, a, " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--seeds") seeds = std::stoi(next());
    else if (a == "--teacher-epochs") teacher_epochs = std::stoi(next());
    else if (a == "--epochs") epochs = std::stoi(next());
    else if (a == "--finetune") finetune = std::stoi(next());
    else if (a == "--limit") limit = std::stoll(next());
    else if (a == "--teacher-limit") teacher_limit = std::stoll(next());
    else if (a == "--teacher-file") teacher_file = next();
    else if (a == "--width") width = std::stod(next());
    else if (a == "--temperature") temperature = std::stod(next());
    else if (a == "--alpha") alpha = std::stod(next());
    else TAILOR_FAIL("unknown argument '", a, "'");
  }
  const data::Dataset train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), limit);
  const data::Dataset test = data::load_fashion_mnist(data::Split::Test);
  std::map<std::string, std::vector<double>> acc;
  std::vector<std::string> order;
  auto record = [&](const std::string& key, double v) {
    if (!acc.count(key)) order.push_back(key);
    acc[key].push_back(v);
  };
  tr::DistillOptions kd;
  kd.temperature = temperature;
  kd.alpha = alpha;
  int64_t teacher_macs = 0, student_macs = 0, pruned_macs = 0;
  const auto start = std::chrono::steady_clock::now();
  GraphModule teacher = models::capture_model("fashion-resnet", models::ZooOptions().seed(1234));
  double teacher_acc = 0;
  if (!teacher_file.empty() && std::filesystem::exists(teacher_file)) {
    teacher = load(teacher_file);
    tr::Model tm = tr::as_model(teacher);
    teacher_acc = tr::accuracy(tm, test);
  } else {
    tr::TrainOptions o;
    o.lr = 0.1;
    o.epochs = teacher_epochs;
    o.restore_best = false;
    const data::Dataset teacher_train =
        data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), teacher_limit);
    tr::finetune(teacher, teacher_train, nullptr, o);
    tr::Model tm = tr::as_model(teacher);
    teacher_acc = tr::accuracy(tm, test);
    std::fprintf(stderr, "teacher: top-1 %.2f%% after %.0f s\n", 100 * teacher_acc,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (!teacher_file.empty()) save(*teacher, teacher_file);
  }
  for (int s = 0; s < seeds; ++s) {
    const auto seed = static_cast<uint64_t>(s);
    tr::TrainOptions o;
    o.lr = 0.1;
    o.seed = seed;
    o.progress = false;
    o.restore_best = false;  // the last epoch's model: no selection on the test set

    // 1. a small student, alone and distilled, same initial weights and budget
    const auto student_opts = models::ZooOptions().width(width).seed(seed + 100);
    o.epochs = epochs;
    GraphModule alone = models::capture_model("fashion-resnet", student_opts);
    GraphModule distilled = models::capture_model("fashion-resnet", student_opts);
    tr::finetune(alone, train, nullptr, o);
    tr::distill(teacher, distilled, train, nullptr, o, kd);
    tr::Model am = tr::as_model(alone), dm = tr::as_model(distilled);
    record("student alone", tr::accuracy(am, test));
    record("student + KD", tr::accuracy(dm, test));

    // 2. the teacher pruned by 50%, recovered by fine-tuning or by distillation from itself unpruned
    GraphModule pruned = clone_module(*teacher);
    ChannelPruneOptions po;
    po.ratio = 0.5;
    {
      torch::NoGradGuard g;
      prune_channels(*pruned, {{1, 1, 28, 28}}, po);
    }
    GraphModule pruned_kd = clone_module(*pruned);
    tr::Model pm = tr::as_model(pruned);
    record("pruned 50%, no recovery", tr::accuracy(pm, test));
    o.epochs = finetune;
    o.lr = 0.02;
    tr::finetune(pruned, train, nullptr, o);
    tr::distill(teacher, pruned_kd, train, nullptr, o, kd);
    tr::Model pkm = tr::as_model(pruned_kd);
    record("pruned 50% + fine-tuning", tr::accuracy(pm, test));
    record("pruned 50% + KD", tr::accuracy(pkm, test));
    {
      torch::NoGradGuard g;
      teacher_macs = analyze(*teacher, {{1, 1, 28, 28}}).macs;
      student_macs = analyze(*alone, {{1, 1, 28, 28}}).macs;
      pruned_macs = analyze(*pruned, {{1, 1, 28, 28}}).macs;
    }
    std::fprintf(stderr, "seed %d done after %.0f s\n", s,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("\nFashion-MNIST; teacher: %lld training images, %d epochs, top-1 %.2f%%; students: %lld training "
              "images, %d seed(s), %d epochs; pruned recovery %d epochs (KD: T = %g, alpha = %g)\nMACs per image: "
              "teacher %.2fM, student (width %g) %.2fM (%.1fx fewer), pruned %.2fM\n\n"
              "| model | top-1 %% (mean +- std) | per seed |\n|---|---|---|\n",
              static_cast<long long>(teacher_limit), teacher_epochs, 100 * teacher_acc,
              static_cast<long long>(train.size()), seeds, epochs, finetune, temperature, alpha,
              teacher_macs / 1e6, width, student_macs / 1e6,
              static_cast<double>(teacher_macs) / static_cast<double>(std::max<int64_t>(1, student_macs)),
              pruned_macs / 1e6);
  for (const auto& key : order) {
    std::string per;
    for (double v : acc[key]) per += (per.empty() ? "" : ", ") + std::to_string(100 * v).substr(0, 5);
    std::printf("| %s | %.2f +- %.2f | %s |\n", key.c_str(), 100 * mean(acc[key]), 100 * stdev(acc[key]), per.c_str());
  }
  std::printf("\nKD gain on the small student: %+.2f points; on the pruned model over fine-tuning: %+.2f points\n",
              100 * (mean(acc["student + KD"]) - mean(acc["student alone"])),
              100 * (mean(acc["pruned 50% + KD"]) - mean(acc["pruned 50% + fine-tuning"])));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_distill: %s\n", e.what());
  return 1;
}
