// Architecture search, measured on Fashion-MNIST (onednn-cpu, 1 thread, the machine it runs on).
//
//   bench_nas search   --table T.json [--space fashion-resnet] [--limit N] [--validation V] [--epochs E]
//                      [--finetune F] [--evaluations K] [--seed S] [--json FILE]
//   bench_nas netadapt --table T.json [--limit N] [--validation V] [--epochs E] [--finetune F] [--seed S]
//                      [--fractions 0.9,0.8] [--short-term-images I] [--step S] [--judge-as-cut] [--json FILE]
//   bench_nas probe    --table T.json [--limit N] [--validation V] [--epochs E] [--short-term-images I] [--seed S]
//
// search: one supernet trained for E epochs (sandwich rule); at three latency budgets (a quarter, half and three
// quarters of the way from the smallest to the largest architecture's predicted latency) evolution (children
// screened by the accuracy predictor), plain evolution and random search each evaluate K subnets on the validation
// split; the best evolved subnet is fine-tuned F epochs. Against
// it, the largest architecture scaled uniformly (width x0.25, 0.5, 0.75, 1.0), each trained from scratch F epochs.
// Everything is re-measured in one interleaved timing; test accuracy on the Fashion-MNIST test split.
// netadapt: fashion-resnet trained E epochs, then at budgets (fractions of its predicted latency) NetAdapt against
// uniform L1 channel pruning brought to NetAdapt's measured latency by bisection. Both get F epochs' worth of
// fine-tuning images in all: NetAdapt spends I images on each proposal and the rest (at least one epoch) on its
// result, and uniform pruning gets exactly as many images as NetAdapt used.
// probe: how well NetAdapt's cheap judgements of a proposal (as cut, batch norm re-estimated, briefly fine-tuned)
// rank the cuts of a trained fashion-resnet by their accuracy after one epoch of fine-tuning (Kendall tau).
// --json writes the rows for benchmarks/nas_summary.py, which takes mean and spread over seeds.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

using namespace tailor;
using models::ArchConfig;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double test_top1(GraphModuleImpl& m, const data::Dataset& test) {
  train::Model model = train::as_model(m);
  return train::accuracy(model, test);
}

train::TrainOptions train_options(int epochs, uint64_t seed) {
  train::TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 128;
  o.lr = 0.05;
  o.seed = seed;
  o.progress = false;
  return o;
}

// The largest architecture with every width (stem, stages, head) scaled by `m`.
ArchConfig scaled(ArchConfig a, double m) {
  auto s = [m](int64_t w) { return std::max<int64_t>(4, static_cast<int64_t>(std::lround(w * m))); };
  a.stem = s(a.stem);
  for (auto& st : a.stages) st.width = s(st.width);
  a.head = s(a.head);
  return a;
}

// The training split repeated and cut to exactly `images` images: one epoch over it is `images` images of
// fine-tuning (under one cosine schedule), so two methods can be given the same number to the image.
data::Dataset repeated(const data::Dataset& d, int64_t images) {
  std::vector<torch::Tensor> x, y;
  for (int64_t left = images; left > 0; left -= d.size()) {
    const int64_t take = std::min<int64_t>(left, d.size());
    x.push_back(d.images.slice(0, 0, take));
    y.push_back(d.labels.slice(0, 0, take));
  }
  data::Dataset out;
  out.images = torch::cat(x);
  out.labels = torch::cat(y);
  return out;
}

void write_json(const std::string& file, const nlohmann::json& j) {
  if (!file.empty()) write_file_atomically(file, j.dump(2) + "\n");
}

struct Args {
  std::string table, space = "fashion-resnet", json;
  int64_t limit = 20000, validation = 2000, evaluations = 30;
  int epochs = 4, finetune = 2;
  uint64_t seed = 0;
  std::vector<double> fractions = {0.9, 0.8};  ///< netadapt: budgets as fractions of the trained model's latency
  int64_t short_term_images = 500;             ///< netadapt: fine-tuning of each proposal
  double step = 0.1;                           ///< netadapt: latency cut per iteration
  bool judge_as_cut = false;                   ///< netadapt: proposals judged before fine-tuning
};

int search_bench(const Args& a) {
  const models::SearchSpace sp = nas::load_space(a.space);
  auto table = nas::latency_table("onednn-cpu", a.table, {});
  const auto all = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), a.limit);
  const auto split = nas::split_validation(all, a.validation);
  const auto test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), -1);
  std::printf("target: %s\ndata: %lld training, %lld validation, %lld test images; supernet %d epochs, fine-tune %d "
              "epochs, %lld evaluations per search, seed %llu\n\n",
              table->target().str().c_str(), static_cast<long long>(split.train.size()),
              static_cast<long long>(split.validation.size()), static_cast<long long>(test.size()), a.epochs,
              a.finetune, static_cast<long long>(a.evaluations), static_cast<unsigned long long>(a.seed));

  auto t0 = std::chrono::steady_clock::now();
  nas::Supernet net(sp, a.seed);
  nas::SupernetTrainOptions so;
  so.train = train_options(a.epochs, a.seed);
  so.train.progress = true;
  nas::train_supernet(net, split.train, nullptr, so);
  const double train_s = seconds_since(t0);

  nas::Constraints probe;
  probe.latency = {{1e9, table, "onednn-cpu"}};
  const double small_ms = nas::describe(sp, sp.smallest(), probe).predicted_ms[0];
  const double large_ms = nas::describe(sp, sp.largest(), probe).predicted_ms[0];
  std::printf("supernet: %.0f s; predicted latency smallest %.3f ms, largest %.3f ms\n\n", train_s, small_ms, large_ms);

  struct Row {
    std::string name;
    ArchConfig config;
    double budget = 0, predicted = 0, val_evo = 0, val_plain = 0, val_random = 0, test_extracted = 0, test = 0,
           search_s = 0, max_ratio = 0, predictor_rmse = 0;
    int screened = 0;
    GraphModule module{nullptr};
  };
  std::vector<Row> rows;
  const nas::Evaluator evaluate = nas::supernet_evaluator(net, split.train, split.validation, 8);
  for (double f : {0.25, 0.5, 0.75}) {
    Row r;
    r.budget = small_ms + f * (large_ms - small_ms);
    nas::Constraints k;
    k.latency = {{r.budget, table, "onednn-cpu"}};
    nas::SearchOptions o;
    o.evaluations = static_cast<int>(a.evaluations);
    o.population = std::max(4, static_cast<int>(a.evaluations / 3));
    o.seed = a.seed;
    o.seconds_per_model = 1.0;
    t0 = std::chrono::steady_clock::now();
    const auto evo = nas::search(sp, k, evaluate, o);
    r.search_s = seconds_since(t0);
    o.screen = 0;
    const auto plain = nas::search(sp, k, evaluate, o);
    o.algorithm = "random";
    const auto rnd = nas::search(sp, k, evaluate, o);
    r.config = evo.best().config;
    r.predicted = evo.best().predicted_ms[0];
    r.val_evo = evo.best().accuracy;
    r.val_random = rnd.best().accuracy;
    r.val_plain = plain.best().accuracy;
    r.screened = evo.screened;
    r.predictor_rmse = evo.predictor_loo_rmse;
    r.max_ratio = evo.max_measured_over_predicted;
    std::printf("budget %.3f ms: evolution %.2f%% (%s; %d mutants screened, predictor error %.2f points), "
                "plain evolution %.2f%%, random %.2f%%; measured/predicted up to %.2f; %zu over budget when measured; "
                "search %.0f s\n",
                r.budget, 100 * r.val_evo, r.config.str().c_str(), r.screened, 100 * r.predictor_rmse,
                100 * r.val_plain, 100 * r.val_random,
                evo.max_measured_over_predicted, evo.over_budget.size(), r.search_s);
    std::fflush(stdout);
    r.module = nas::subnet(net, r.config, split.train, 8);
    r.test_extracted = test_top1(*r.module, test);
    train::finetune(r.module, split.train, nullptr, train_options(a.finetune, a.seed));
    r.test = test_top1(*r.module, test);
    r.name = "searched @ " + std::to_string(r.budget).substr(0, 5) + " ms";
    rows.push_back(std::move(r));
  }
  for (double m : {0.25, 0.5, 0.75, 1.0}) {
    Row r;
    r.config = scaled(sp.largest(), m);
    r.name = "uniform x" + std::to_string(m).substr(0, 4);
    r.module = models::capture_arch(r.config, sp.zoo_options(a.seed));
    train::finetune(r.module, split.train, nullptr, train_options(a.finetune, a.seed));
    r.test = test_top1(*r.module, test);
    r.predicted = table->predict(latency::detect_kernels(*r.module, r.config.input_shape(1), table->target())).total_ms;
    rows.push_back(std::move(r));
  }
  std::vector<GraphModule> modules;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& r : rows) {
    modules.push_back(r.module);
    shapes.push_back(r.config.input_shape(sp.in_channels));
  }
  const auto measured = nas::measure_latency(modules, shapes, table->target(), 3.0);
  std::printf("\n| model | configuration | budget ms | predicted ms | measured ms | val top-1 evolution | val top-1 random "
              "| test top-1 extracted | test top-1 after %d epochs |\n|---|---|---|---|---|---|---|---|---|\n",
              a.finetune);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    auto pct = [](double v) { return v > 0 ? std::to_string(100 * v).substr(0, 5) : std::string("-"); };
    std::printf("| %s | `%s` | %s | %.3f | %.3f | %s | %s | %s | %s |\n", r.name.c_str(), r.config.str().c_str(),
                r.budget > 0 ? std::to_string(r.budget).substr(0, 5).c_str() : "-", r.predicted, measured[i],
                pct(r.val_evo).c_str(), pct(r.val_random).c_str(), pct(r.test_extracted).c_str(), pct(r.test).c_str());
  }
  // Each searched subnet against the uniform models: the best one no slower (measured), and the fastest one at
  // least as accurate.
  std::printf("\n| budget ms | searched test top-1 | best uniform at <= its measured latency | points | fastest uniform "
              "at >= its accuracy | speed-up |\n|---|---|---|---|---|---|\n");
  nlohmann::json out{{"seed", a.seed},       {"supernet_epochs", a.epochs}, {"finetune_epochs", a.finetune},
                     {"evaluations", a.evaluations}, {"supernet_seconds", train_s}, {"target", table->target().str()}};
  for (size_t j = 3; j < rows.size(); ++j)
    out["uniform"].push_back({{"name", rows[j].name}, {"config", rows[j].config.str()}, {"measured_ms", measured[j]},
                              {"test_top1", rows[j].test}});
  for (size_t i = 0; i < 3; ++i) {
    double best_acc = -1, fastest = -1;
    for (size_t j = 3; j < rows.size(); ++j) {
      if (measured[j] <= measured[i] * 1.02) best_acc = std::max(best_acc, rows[j].test);
      if (rows[j].test >= rows[i].test && (fastest < 0 || measured[j] < fastest)) fastest = measured[j];
    }
    const Row& r = rows[i];
    out["budgets"].push_back({{"budget_ms", r.budget},
                              {"config", r.config.str()},
                              {"predicted_ms", r.predicted},
                              {"measured_ms", measured[i]},
                              {"validation_evolution", r.val_evo},
                              {"validation_random", r.val_random},
                              {"validation_plain_evolution", r.val_plain},
                              {"screened", r.screened},
                              {"predictor_loo_rmse", r.predictor_rmse},
                              {"test_extracted", r.test_extracted},
                              {"test_top1", r.test},
                              {"search_seconds", r.search_s},
                              {"max_measured_over_predicted", r.max_ratio},
                              {"best_uniform_no_slower", best_acc},
                              {"fastest_uniform_as_accurate_ms", fastest}});
    std::printf("| %.3f | %.2f%% | %s | %s | %s | %s |\n", rows[i].budget, 100 * rows[i].test,
                best_acc < 0 ? "none that fast" : (std::to_string(100 * best_acc).substr(0, 5) + "%").c_str(),
                best_acc < 0 ? "-" : std::to_string(100 * (rows[i].test - best_acc)).substr(0, 5).c_str(),
                fastest < 0 ? "none as accurate" : (std::to_string(fastest).substr(0, 5) + " ms").c_str(),
                fastest < 0 ? "-" : (std::to_string(fastest / measured[i]).substr(0, 4) + "x").c_str());
  }
  write_json(a.json, out);
  return 0;
}

int netadapt_bench(const Args& a) {
  auto table = nas::latency_table("onednn-cpu", a.table, {});
  const auto all = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), a.limit);
  const auto split = nas::split_validation(all, a.validation);
  const auto test = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), -1);
  const std::vector<int64_t> shape{1, 1, 28, 28};
  GraphModule base = models::capture_model("fashion-resnet", models::ZooOptions().seed(a.seed));
  train::finetune(base, split.train, nullptr, train_options(a.epochs, a.seed));
  auto predict = [&](GraphModuleImpl& m) {
    return table->predict(latency::detect_kernels(m, shape, table->target())).total_ms;
  };
  const double start = predict(*base);
  std::printf("target: %s\nfashion-resnet trained %d epochs: test %.2f%%, predicted %.3f ms\n\n",
              table->target().str().c_str(), a.epochs, 100 * test_top1(*base, test), start);
  std::printf("| budget ms | method | measured ms | fine-tuning images | test top-1 |\n|---|---|---|---|---|\n");
  nlohmann::json out{{"seed", a.seed}, {"base_epochs", a.epochs}, {"finetune_epochs", a.finetune},
                     {"target", table->target().str()}, {"start_predicted_ms", start},
                     {"base_test_top1", test_top1(*base, test)}};
  for (double f : a.fractions) {
    GraphModule na = clone_module(*base);
    nas::NetAdaptOptions o;
    o.table = table;
    o.input_shape = shape;
    o.budget_ms = f * start;
    o.short_term = train_options(1, a.seed);
    o.short_term_images = a.short_term_images;
    o.step = a.step;
    o.fine_tune_every_proposal = !a.judge_as_cut;
    o.long_term = train_options(0, a.seed);  // below, with what the proposals left of the budget
    o.progress = [](int it, double ms, double acc, const std::string& g) {
      std::fprintf(stderr, "  netadapt %d: %s -> %.3f ms, validation %.2f%%\n", it, g.c_str(), ms, 100 * acc);
    };
    const auto r = nas::netadapt(*na, split.train, split.validation, o);
    int64_t proposals = 0;
    for (const auto& it : r.iterations) {
      // Dropped proposals were timed only; judged as cut, only the kept one is fine-tuned.
      proposals += o.fine_tune_every_proposal ? it.proposals - it.dropped : 1;
      std::fprintf(stderr, "  iteration %d: %s %lld -> %lld channels, predicted %.4f ms, timed %.4f ms, %d of %d "
                   "proposals dropped by timing\n", it.iteration, it.group.c_str(),
                   static_cast<long long>(it.channels_before), static_cast<long long>(it.channels_after),
                   it.predicted_ms, it.measured_ms, it.dropped, it.proposals);
    }
    const int64_t n = split.train.size();
    const int64_t proposal_images = proposals * o.short_term_images;
    // What the proposals left of the budget (at least one epoch) goes to the result's long-term fine-tuning.
    const int64_t long_term = std::max<int64_t>(n, a.finetune * n - proposal_images);
    train::finetune(na, repeated(split.train, long_term), nullptr, train_options(1, a.seed));
    const int64_t images = proposal_images + long_term;
    // Uniform L1 pruning at the ratio whose measured latency matches NetAdapt's, fine-tuned on as many images.
    double lo = 0, hi = 0.9;
    GraphModule uni{nullptr};
    for (int i = 0; i < 7; ++i) {
      const double mid = (lo + hi) / 2;
      GraphModule c = clone_module(*base);
      ChannelPruneOptions po;
      po.ratio = mid;
      prune_channels(*c, {shape}, po);
      // Timed beside NetAdapt's result each time: the machine's drift between two separate timings was as large
      // as the differences the bisection has to tell apart.
      const auto pair = nas::measure_latency({na, c}, {shape, shape}, table->target(), 1.0);
      if (pair[1] > pair[0]) lo = mid; else { hi = mid; uni = c; }
    }
    if (!uni) {
      uni = clone_module(*base);
      ChannelPruneOptions po;
      po.ratio = hi;
      prune_channels(*uni, {shape}, po);
    }
    train::finetune(uni, repeated(split.train, images), nullptr, train_options(1, a.seed));
    const auto both = nas::measure_latency({na, uni}, {shape, shape}, table->target(), 3.0);
    const double na_top1 = test_top1(*na, test), uni_top1 = test_top1(*uni, test);
    std::printf("| %.3f | NetAdapt (%zu iterations) | %.3f | %lld | %.2f%% |\n", o.budget_ms, r.iterations.size(),
                both[0], static_cast<long long>(images), 100 * na_top1);
    const int64_t uni_images = images;
    std::printf("| %.3f | uniform L1 ratio %.3f | %.3f | %lld | %.2f%% |\n", o.budget_ms, hi, both[1],
                static_cast<long long>(uni_images), 100 * uni_top1);
    std::fflush(stdout);
    out["budgets"].push_back({{"budget_ms", o.budget_ms},
                              {"iterations", r.iterations.size()},
                              {"netadapt_ms", both[0]},
                              {"netadapt_images", images},
                              {"netadapt_proposal_images", proposal_images},
                              {"netadapt_step", o.step},
                              {"netadapt_judged_as_cut", !o.fine_tune_every_proposal},
                              {"netadapt_long_term_images", long_term},
                              {"netadapt_predicted_ms", r.predicted_ms},
                              {"netadapt_check_measured_ms", r.measured_ms},
                              {"netadapt_check_machine_slowdown", r.machine_slowdown},
                              {"netadapt_test_top1", na_top1},
                              {"uniform_ratio", hi},
                              {"uniform_ms", both[1]},
                              {"uniform_images", uni_images},
                              {"uniform_test_top1", uni_top1}});
  }
  write_json(a.json, out);
  return 0;
}

// How well cheap judgements of a cut rank it: every prunable group of the trained fashion-resnet cut to a half and
// to a quarter of its channels (L1), judged as cut, after batch-norm re-estimation, and after 500 images of
// fine-tuning (learning rates 0.05, 0.01, 0.002), against validation top-1 after one epoch of fine-tuning.
int probe_bench(const Args& a) {
  const auto all = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), a.limit);
  const auto split = nas::split_validation(all, a.validation);
  const std::vector<int64_t> shape{1, 1, 28, 28};
  GraphModule base = models::capture_model("fashion-resnet", models::ZooOptions().seed(a.seed));
  train::finetune(base, split.train, nullptr, train_options(a.epochs, a.seed));
  auto accuracy = [&](GraphModuleImpl& m) {
    m.eval();
    train::Model model = train::as_model(m);
    return train::accuracy(model, split.validation);
  };
  data::Dataset slice;
  slice.images = split.train.images.slice(0, 0, a.short_term_images);
  slice.labels = split.train.labels.slice(0, 0, a.short_term_images);
  const std::vector<std::string> judges = {"as cut", "batch norm re-estimated", "fine-tuned lr 0.05",
                                           "batch norm + fine-tuned lr 0.05", "batch norm + fine-tuned lr 0.01",
                                           "batch norm + fine-tuned lr 0.002"};
  std::vector<std::vector<double>> judged(judges.size());
  std::vector<double> truth;
  std::printf("fashion-resnet trained %d epochs: validation %.2f%%\n\n| group | kept |", a.epochs,
              100 * accuracy(*base));
  for (const auto& j : judges) std::printf(" %s |", j.c_str());
  std::printf(" after 1 epoch |\n|---|---|---|---|---|---|---|---|---|\n");
  for (double keep : {0.5, 0.25}) {
    for (const auto& g : channel_groups(*base, {shape})) {
      if (!g.prunable) continue;
      auto cut_group = [&]() {
        GraphModule c = clone_module(*base);
        ChannelPruneOptions po;
        po.ratio = 0;
        po.layer_ratios[g.producers.front()] = 1 - keep;
        prune_channels(*c, {shape}, po);
        return c;
      };
      auto cut = [&](bool recalibrate, double lr) {
        GraphModule c = cut_group();
        if (recalibrate) nas::recalibrate_batch_norm(*c, slice, 4, std::max<int64_t>(1, slice.size() / 4));
        if (lr > 0) {
          auto o = train_options(1, a.seed);
          o.lr = lr;
          train::finetune(c, slice, nullptr, o);
        }
        return accuracy(*c);
      };
      const std::vector<double> row = {cut(false, 0),   cut(true, 0),    cut(false, 0.05),
                                       cut(true, 0.05), cut(true, 0.01), cut(true, 0.002)};
      GraphModule long_term = cut_group();
      train::finetune(long_term, split.train, nullptr, train_options(1, a.seed));
      truth.push_back(accuracy(*long_term));
      std::printf("| %s | %.2f |", g.producers.front().c_str(), keep);
      for (size_t j = 0; j < row.size(); ++j) {
        judged[j].push_back(row[j]);
        std::printf(" %.2f%% |", 100 * row[j]);
      }
      std::printf(" %.2f%% |\n", 100 * truth.back());
      std::fflush(stdout);
    }
  }
  std::printf("\nKendall tau-b against the accuracy after one epoch:\n");
  for (size_t j = 0; j < judges.size(); ++j)
    std::printf("  %-34s %.3f\n", judges[j].c_str(), latency::accuracy(judged[j], truth).kendall_tau);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"architecture search benchmarks"};
  Args a;
  std::string mode;
  app.add_option("mode", mode, "search, netadapt or probe")->required();
  app.add_option("--table", a.table, "latency table of onednn-cpu, 1 thread, on this machine")->required();
  app.add_option("--space", a.space);
  app.add_option("--limit", a.limit);
  app.add_option("--validation", a.validation);
  app.add_option("--epochs", a.epochs);
  app.add_option("--finetune", a.finetune);
  app.add_option("--evaluations", a.evaluations);
  app.add_option("--seed", a.seed);
  app.add_option("--fractions", a.fractions, "netadapt: budgets as fractions of the model's predicted latency")
      ->delimiter(',');
  app.add_option("--short-term-images", a.short_term_images, "netadapt: fine-tuning images per proposal (0: none)");
  app.add_option("--step", a.step, "netadapt: latency cut per iteration, a fraction of the start");
  app.add_flag("--judge-as-cut", a.judge_as_cut, "netadapt: judge proposals before fine-tuning, fine-tune the kept one");
  app.add_option("--json", a.json, "write the results here too (for benchmarks/nas_summary.py)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(2);
  try {
    if (mode == "search") return search_bench(a);
    if (mode == "netadapt") return netadapt_bench(a);
    if (mode == "probe") return probe_bench(a);
    std::fprintf(stderr, "mode must be search, netadapt or probe\n");
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.message().c_str());
    return 1;
  }
}
