// tailor's API inside your own training loop: a Fashion-MNIST teacher, then a student that is channel-pruned,
// distilled from the teacher with a hand-written loop (KD loss + labels), prepared for quantization-aware
// training and distilled again, and finally profiled as real int8 on onednn-cpu.
//   ./train_loop [epochs=1] [train-images=20000]
#include <cstdio>
#include <cstdlib>

#include <torch/torch.h>

#include <tailor/tailor.hpp>
#include <tailor/train/train.hpp>

namespace tr = tailor::train;

namespace {

double top1(tailor::GraphModuleImpl& m, const tailor::data::Dataset& test) {
  torch::NoGradGuard g;
  m.eval();
  return tailor::data::top1_accuracy([&](const at::Tensor& x) { return m.forward(x); }, test);
}

// Your loop: any optimizer, any schedule; tailor provides the loss and keeps the teacher out of autograd.
void distill_epochs(tailor::GraphModuleImpl& teacher, tailor::GraphModuleImpl& student,
                    const tailor::data::Dataset& train, int epochs, torch::optim::Optimizer& opt) {
  teacher.eval();
  for (int e = 0; e < epochs; ++e) {
    student.train();
    for (const auto& b : tailor::data::batches(train, 128, true, static_cast<uint64_t>(e))) {
      torch::Tensor soft;
      {
        torch::NoGradGuard g;
        soft = teacher.forward(b.images);
      }
      opt.zero_grad();
      tr::distillation_loss(student.forward(b.images), soft, b.labels, /*temperature=*/4.0, /*alpha=*/0.7).backward();
      opt.step();
    }
  }
  student.eval();
}

}  // namespace

int main(int argc, char** argv) try {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 1;
  const int64_t images = argc > 2 ? std::atoll(argv[2]) : 20000;
  const auto train = tailor::data::load_fashion_mnist(tailor::data::Split::Train, tailor::data::fashion_mnist_root(), images);
  const auto test = tailor::data::load_fashion_mnist(tailor::data::Split::Test);

  // 1. teacher, with the library's trainer
  tailor::GraphModule teacher = tailor::models::capture_model("fashion-resnet");
  tr::TrainOptions o;
  o.epochs = epochs;
  o.lr = 0.1;
  tr::finetune(teacher, train, nullptr, o);
  std::printf("teacher: top-1 %.2f%%, %lld MACs\n", 100 * top1(*teacher, test),
              static_cast<long long>(tailor::analyze(*teacher, {{1, 1, 28, 28}}).macs));

  // 2. student = teacher with half its channels removed, recovered by distillation in our own loop
  tailor::GraphModule student = tailor::clone_module(*teacher);
  tailor::ChannelPruneOptions po;
  po.ratio = 0.5;
  po.round_to = 8;
  tailor::prune_channels(*student, {{1, 1, 28, 28}}, po);
  std::printf("pruned: top-1 %.2f%% before recovery, %lld MACs\n", 100 * top1(*student, test),
              static_cast<long long>(tailor::analyze(*student, {{1, 1, 28, 28}}).macs));
  {
    torch::optim::SGD opt(student->parameters(), torch::optim::SGDOptions(0.02).momentum(0.9));
    distill_epochs(*teacher, *student, train, epochs, opt);
  }
  std::printf("pruned + KD: top-1 %.2f%%\n", 100 * top1(*student, test));

  // 3. quantization-aware training of the pruned student, still learning from the float teacher
  std::vector<torch::Tensor> calibration;
  for (const auto& b : tailor::data::batches(train, 64, false)) {
    calibration.push_back(b.images);
    if (calibration.size() == 8) break;
  }
  tailor::quant::prepare_qat(*student, calibration);  // LSQ scales: train them gently (Adam, small rate)
  {
    torch::optim::Adam opt(student->parameters(), torch::optim::AdamOptions(1e-4));
    distill_epochs(*teacher, *student, train, 1, opt);
  }
  std::printf("pruned + KD + QAT int8: top-1 %.2f%%\n", 100 * top1(*student, test));

  // 4. the int8 student on onednn-cpu
  tailor::ProfileOptions prof;
  prof.max_seconds = 2;
  const auto fp = tailor::profile(*teacher, "onednn-cpu", {1, 1, 28, 28}, prof);
  const auto q = tailor::profile(*student, "onednn-cpu", {1, 1, 28, 28}, prof);
  std::printf("onednn-cpu p50: teacher %.3f ms, pruned int8 student %.3f ms\n", fp.latency.p50_ms, q.latency.p50_ms);
  tailor::save(*student, "student_int8.pt");
  std::printf("wrote student_int8.pt\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_loop: %s\n", e.what());
  return 1;
}
