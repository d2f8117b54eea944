// The recipe runner: baseline, then each variant (its pipeline, evaluation, export, profiles), interleaved
// re-timing, flags and goals, the report; resumable from the state it keeps in the output folder.
#include "tailor/recipe/recipe.hpp"

#include "tailor/core/text.hpp"
#include "tailor/runtime/isa.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include "tailor/capture/capture.hpp"
#include "tailor/core/error.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/export/export.hpp"
#include "tailor/export/onnx.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/train/train.hpp"
#include "tailor/version.hpp"

#include "internal.hpp"

namespace fs = std::filesystem;

namespace tailor::recipe {

using namespace detail;

namespace {

std::string message_of(const std::exception& e) {
  if (const auto* te = dynamic_cast<const Error*>(&e)) return te->message();
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

std::string now_utc() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return b;
}

class RecipeRun {
 public:
  RecipeRun(const Recipe& r, const RunOptions& opt)
      : r_(r),
        opt_(opt),
        out_(!opt.output.empty() ? opt.output : !r.output.empty() ? r.output : "tailor-out/" + r.name),
        variants_dir_(fs::path(out_) / "variants"),
        manifest_path_((fs::path(out_) / "manifest.json").string()),
        steps_path_((fs::path(out_) / ".tailor-steps.json").string()),
        base_file_((variants_dir_ / "baseline.pt").string()),
        log_(!opt.quiet),
        total_(r.variants.size() + 1),
        start_(std::chrono::steady_clock::now()) {}

  RunResult run() {
    fs::create_directories(variants_dir_);
    // Before training or loading runs any kernel: oneDNN fixes its ISA with the first one.
    if (!r_.isa.empty()) set_isa_cap(r_.isa);
    load_resume_state();
    manifest_.tailor_version = std::string(version());
    manifest_.created = now_utc();
    base_key_ = base_key();
    load_data();
    threads_ = r_.threads > 0 ? r_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    shape_ = r_.input_shape;
    shape_[0] = r_.batch;
    load_latency_tables();
    run_baseline();
    for (const auto& v : r_.variants) run_variant(v);
    retime_interleaved();
    predict_latencies();
    flag_variants();
    choose_kept();
    manifest_.save(manifest_path_);
    place_variants();
    result_.report = (fs::path(out_) / "report.html").string();
    write_file_atomically(result_.report,
                          render_report(r_, manifest_, result_.kept, result_.plans, result_.placement_failures));
    result_.summary = summary();
    result_.manifest = manifest_;
    return result_;
  }

 private:
  // What each finished step was computed from: a step is reused only when its key is unchanged. An unreadable
  // state is reported (not silently dropped), moved aside for the user to look at, and rebuilt.
  void load_resume_state() {
    if (!opt_.resume || !fs::exists(steps_path_) || !fs::exists(manifest_path_)) return;
    try {
      std::ifstream in(steps_path_);
      steps_ = nlohmann::json::parse(in);
      TAILOR_CHECK(steps_.is_object(), steps_path_, ": not a JSON object");
      manifest_ = Manifest::load(manifest_path_);
    } catch (const std::exception& e) {
      const std::string aside = ".corrupt-" + std::to_string(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));
      std::error_code ec;
      fs::rename(steps_path_, steps_path_ + aside, ec);
      fs::rename(manifest_path_, manifest_path_ + aside, ec);
      const std::string warning = "the resume state in " + out_ + " is unreadable (" + message_of(e) +
                                  "); moved it aside as *" + aside + " and rebuilding every step";
      result_.warnings.push_back(warning);
      std::fprintf(stderr, "tailor: warning: %s\n", warning.c_str());
      steps_ = nlohmann::json::object();
      manifest_ = Manifest{};
    }
  }

  std::string base_key() const {
    std::ostringstream key;
    key << r_.model_file << "|" << r_.zoo << "|" << r_.width << "|" << r_.train_epochs << "|" << r_.train_lr << "|"
        << r_.train_limit << "|" << r_.seed << "|" << r_.data << "|" << r_.eval_limit << "|" << r_.batch << "|"
        << r_.threads << "|" << join(r_.backends);
    if (!r_.isa.empty()) key << "|isa=" << r_.isa;
    if (r_.formats.size() > 1) key << "|formats=" << join(r_.formats);
    if (!r_.model_file.empty())
      key << "|" << fs::file_size(r_.model_file) << "|" << fs::last_write_time(r_.model_file).time_since_epoch().count();
    return key.str();
  }

  // The test split for accuracy; calibration batches (with labels when the data has them) only when a pass
  // says it needs them.
  void load_data() {
    has_data_ = r_.data == "fashion-mnist";
    if (has_data_) test_ = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), r_.eval_limit);
    const bool calibrates = std::any_of(r_.variants.begin(), r_.variants.end(), [](const VariantSpec& v) {
      return std::any_of(v.pipeline.begin(), v.pipeline.end(),
                         [](const PassSpec& p) { return p.needs.calibration || p.needs.labels; });
    });
    if (calibrates)
      calibration_ = data::calibration_batches(has_data_ ? "fashion-mnist" : "random", r_.input_shape,
                                               r_.calibration_batches, r_.calibration_batch_size,
                                               has_data_ ? &calibration_labels_ : nullptr);
  }

  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  // Evaluates, saves and profiles a finished model into its card.
  void finish_card(GraphModuleImpl& m, VariantCard& card, const std::string& file) {
    torch::NoGradGuard g;
    m.eval();
    card.input_shapes = {r_.input_shape};
    card.set_costs(analyze(m, {r_.input_shape}));
    if (has_data_) {
      card.accuracy = data::top1_accuracy(m, test_, 500);
      card.accuracy_data = "Fashion-MNIST test split (" + std::to_string(test_.size()) + " images)";
    }
    if (std::find(r_.formats.begin(), r_.formats.end(), "onnx") != r_.formats.end()) {
      // A variant ONNX cannot express is still a variant: its card says why it has no ONNX file.
      const std::string onnx = fs::path(file).replace_extension(".onnx").string();
      try {
        export_onnx(m, onnx, OnnxExportOptions({r_.input_shape}).dynamic_batch(true));
        card.onnx_file = fs::relative(onnx, out_).string();
      } catch (const Error& e) {
        card.flags.push_back("no ONNX file: " + e.message());
      }
    }
    save(m, file);
    card.file = fs::relative(file, out_).string();
    card.file_bytes = static_cast<int64_t>(fs::file_size(file));
    for (const auto& b : r_.backends) {
      ProfileOptions po;
      po.threads = threads_;
      po.batches = {r_.batch};
      po.max_seconds = r_.max_seconds;
      po.node_runs = 3;
      po.isa = r_.isa;
      card.profiles[b] = profile(m, b, shape_, po);
    }
  }

  void step_done(const std::string& name, const std::string& key, const VariantCard& card) {
    manifest_.upsert(card);
    manifest_.save(manifest_path_);
    steps_[name] = key;
    write_file_atomically(steps_path_, steps_.dump(2));
    ++done_;
    if (!log_) return;
    std::string latencies;
    for (const auto& [b, p] : card.profiles)
      latencies += (latencies.empty() ? "" : ", ") + b + " " + short_number(p.latency.p50_ms) + " ms";
    const double el = elapsed();
    std::fprintf(stderr, "[%zu/%zu] %s: %s%s; %.0f s elapsed, ~%.0f s left\n", done_, total_, name.c_str(),
                 card.accuracy ? ("top-1 " + short_number(100 * *card.accuracy) + "%, ").c_str() : "",
                 latencies.c_str(), el, el / static_cast<double>(done_) * static_cast<double>(total_ - done_));
  }

  bool reusable(const std::string& name, const std::string& key) {
    const auto* card = manifest_.find(name);
    return opt_.resume && steps_.contains(name) && steps_[name] == key && card && !card->file.empty() &&
           fs::exists(fs::path(out_) / card->file);
  }

  void reused(const std::string& name) {
    ++done_;
    ++result_.reused;
    if (log_) std::fprintf(stderr, "[%zu/%zu] %s: finished in an earlier run, reused\n", done_, total_, name.c_str());
  }

  void run_baseline() {
    if (reusable("baseline", base_key_)) {
      reused("baseline");
    } else {
      GraphModule base{nullptr};
      if (!r_.zoo.empty()) {
        base = models::capture_model(r_.zoo, models::ZooOptions().width(r_.width).seed(r_.seed));
        if (r_.train_epochs > 0) {
          if (log_) std::fprintf(stderr, "training the baseline %s for %d epoch(s)\n", r_.zoo.c_str(), r_.train_epochs);
          const auto train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), r_.train_limit);
          train::TrainOptions to;
          to.epochs = r_.train_epochs;
          to.lr = r_.train_lr;
          to.seed = r_.seed;
          to.progress = log_;
          train::finetune(base, train, nullptr, to);
        }
      } else {
        base = load(r_.model_file);
      }
      VariantCard card;
      card.name = "baseline";
      finish_card(*base, card, base_file_);
      step_done("baseline", base_key_, card);
    }
    base_card_ = *manifest_.find("baseline");
  }

  // A variant whose pipeline extends a finished variant's starts from that variant's model (its parent):
  // c50-int8 quantizes c50-fp32 instead of pruning and distilling again.
  void run_variant(const VariantSpec& v) {
    std::vector<std::string> texts;
    for (const auto& p : v.pipeline) texts.push_back(p.str());
    const std::string key = base_key_ + "|" + join(texts, ",");
    size_t parent_index = 0;
    for (size_t i = 0; i < finished_.size(); ++i) {
      const auto& pt = finished_[i].second;
      if (pt.size() < texts.size() && pt.size() > finished_[parent_index].second.size() &&
          std::equal(pt.begin(), pt.end(), texts.begin()))
        parent_index = i;
    }
    const std::string parent_name = finished_[parent_index].first;
    if (reusable(v.name, key)) {
      finished_.emplace_back(v.name, texts);
      reused(v.name);
      return;
    }
    const std::vector<std::string> rest(texts.begin() + static_cast<std::ptrdiff_t>(finished_[parent_index].second.size()),
                                        texts.end());
    const VariantCard parent_card = *manifest_.find(parent_name);
    if (log_)
      std::fprintf(stderr, "%s: %s%s\n", v.name.c_str(), parent_name == "baseline" ? "" : (parent_name + " + ").c_str(),
                   join(rest, ",").c_str());
    VariantCard card;
    card.name = v.name;
    card.parent = parent_name;
    const std::string file = (variants_dir_ / (v.name + ".pt")).string();
    try {
      GraphModule m = load((fs::path(out_) / parent_card.file).string());
      PassContext ctx;
      ctx.input_shapes = {r_.input_shape};
      ctx.calibration = calibration_;
      ctx.calibration_labels = calibration_labels_;
      ctx.quiet = !log_;
      ctx.seed = r_.seed;
      ctx.teacher = base_file_;  // passes that need a teacher and name none learn from the baseline
      parse_pipeline(join(rest, ","))->run(*m, ctx);
      card.provenance = m->provenance();
      finish_card(*m, card, file);
    } catch (const std::exception& e) {
      record_failure(v.name, parent_card, file, message_of(e));
      return;
    }
    finished_.emplace_back(v.name, texts);
    step_done(v.name, key, card);
  }

  // One failed variant costs only itself: it gets a card that says why, a stale file of an earlier run is
  // removed so OUT never holds a model its card does not describe, and the next run retries it. Variants
  // extending it start from its nearest finished ancestor (and usually fail at the same pass, saying so).
  void record_failure(const std::string& name, const VariantCard& parent, const std::string& file, const std::string& why) {
    VariantCard failed;
    failed.name = name;
    failed.parent = parent.name;
    failed.provenance = parent.provenance;
    failed.input_shapes = {r_.input_shape};
    failed.flags.push_back("failed: " + why);
    fs::remove(file);
    manifest_.upsert(failed);
    manifest_.save(manifest_path_);
    steps_.erase(name);
    write_file_atomically(steps_path_, steps_.dump(2));
    result_.failed.emplace_back(name, why);
    ++done_;
    if (log_) std::fprintf(stderr, "[%zu/%zu] %s: FAILED (%s): %s\n", done_, total_, name.c_str(), r_.file.c_str(), why.c_str());
  }

  // Latency compared fairly: the p50 of one model drifts between measurements minutes apart on a small shared
  // machine (0.095-0.156 ms for the same 0.1 ms model on the 2-core VM), so every variant is timed again in
  // interleaved rounds on each backend and the cards keep the median round; the flags use these numbers.
  void retime_interleaved() {
    std::vector<VariantCard*> ran;
    std::vector<GraphModule> loaded;
    for (auto& c : manifest_.variants)
      if (!c.file.empty()) {
        ran.push_back(&c);
        loaded.push_back(load((fs::path(out_) / c.file).string()));
      }
    if (r_.rounds <= 1 || ran.size() <= 1) return;
    if (log_) std::fprintf(stderr, "timing the %zu variants again in %d interleaved rounds per backend\n", ran.size(), r_.rounds);
    std::vector<const GraphModuleImpl*> modules;
    for (const auto& m : loaded) modules.push_back(m.get());
    ProfileOptions po;
    po.threads = threads_;
    po.max_seconds = r_.max_seconds;
    po.isa = r_.isa;
    for (const auto& b : r_.backends) {
      const auto stats = time_interleaved(modules, b, shape_, po, r_.rounds);
      for (size_t i = 0; i < ran.size(); ++i) {
        auto it = ran[i]->profiles.find(b);
        if (it == ran[i]->profiles.end()) continue;
        it->second.latency = stats[i];
        for (auto& t : it->second.throughput)
          if (t.batch == r_.batch) {
            t.p50_ms = stats[i].p50_ms;
            t.samples_per_s = 1000.0 * static_cast<double>(t.batch) / stats[i].p50_ms;
          }
      }
    }
  }

  // The recipe's latency tables, checked against this run's target before any work is done.
  void load_latency_tables() {
    for (const auto& [b, files] : r_.latency_tables)
      for (const auto& f : files) {
        latency::Model t = latency::Model::load(f);
        const latency::Target here = latency::Target::here(b, threads_, t.target().dtype, r_.isa);
        const std::string diff = t.target().differences(here);
        TAILOR_CHECK(diff.empty(), r_.file, ": latency table '", f, "' was built for ", t.target().str(),
                     ", not for this run's ", here.str(), " (", diff, ")");
        TAILOR_CHECK(t.fitted(), r_.file, ": latency table '", f, "' holds no fitted model (its build was interrupted)");
        tables_[b].push_back(std::move(t));
      }
  }

  // Each variant's p50 predicted from the table of its dtype (int8 for quantized variants), beside the
  // measurement: the report shows how far the latency model is off on this very run.
  void predict_latencies() {
    for (const auto& [b, tables] : tables_)
      for (auto& c : manifest_.variants) {
        c.predicted_ms.erase(b);
        if (c.file.empty()) continue;
        GraphModule m = load((fs::path(out_) / c.file).string());
        bool quantized = false;
        for (int id : m->graph().order()) quantized = quantized || m->graph().node(id).kind == ops::kFakeQuant;
        const std::string dtype = quantized ? "int8" : "float32";
        for (const auto& t : tables)
          if (t.target().dtype == dtype)
            c.predicted_ms[b] = t.predict(latency::detect_kernels(*m, shape_, t.target())).total_ms;
      }
  }

  // "Compressed, but no faster" against the parent, and the goals each variant misses.
  void flag_variants() {
    for (auto& c : manifest_.variants) {
      std::vector<std::string> keep;
      for (const auto& f : c.flags)
        if (f.rfind("goal:", 0) != 0 && f.rfind("not faster", 0) != 0 && f.rfind("under 5%", 0) != 0) keep.push_back(f);
      c.flags = keep;
      const VariantCard* parent = c.parent.empty() || c.file.empty() ? nullptr : manifest_.find(c.parent);
      for (const auto& b : r_.backends) {
        const auto* mine = profile_of(c, b);
        const auto* theirs = parent ? profile_of(*parent, b) : nullptr;
        if (!mine || !theirs) continue;
        // Even timed side by side, two runs of one model differ by a few percent here: a speed-up under 5% is
        // reported as none rather than trusted.
        const double a = mine->latency.p50_ms, p = theirs->latency.p50_ms;
        const std::string vs = " (" + short_number(a) + " vs " + short_number(p) + " ms)";
        if (a >= p)
          c.flags.push_back("not faster than parent " + c.parent + " on " + b + vs);
        else if (a > 0.95 * p)
          c.flags.push_back("under 5% faster than parent " + c.parent + " on " + b + vs + ": within noise");
      }
      if (c.file.empty() && c.name != "baseline") continue;  // a failed variant says so already
      for (const auto& miss : goal_misses(r_, c, base_card_)) c.flags.push_back("goal: " + miss);
    }
  }

  // Kept: variants meeting every goal and on the Pareto front of some profiled backend, fastest first on the
  // first backend.
  void choose_kept() {
    std::set<std::string> on_front;
    for (const auto& b : r_.backends)
      for (const auto& n : pareto_front(manifest_, b)) on_front.insert(n);
    for (const auto& c : manifest_.variants)
      if (on_front.count(c.name) && meets_goals(r_, c, base_card_)) result_.kept.push_back(c.name);
    const std::string first = r_.backends.front();
    std::sort(result_.kept.begin(), result_.kept.end(), [&](const std::string& a, const std::string& b) {
      return profile_of(*manifest_.find(a), first)->latency.p50_ms < profile_of(*manifest_.find(b), first)->latency.p50_ms;
    });
  }

  // The terminal table.
  // The recipe's placement: each variant is profiled on the two devices where its card has no matching profile
  // yet (kept in the manifest, so a resumed run reuses them), then every variant is planned on each link and the
  // chosen plan's parts written to OUT/placement/<link>/. A link where nothing meets the objective is reported,
  // not fatal: the variants are still good.
  void place_variants() {
    if (!r_.placement) return;
    const auto& spec = *r_.placement;
    Manifest planned;
    for (auto& c : manifest_.variants) {
      if (c.file.empty()) continue;
      for (const auto* d : {&spec.edge, &spec.cloud}) {
        if (place::find_profile(c, *d) || !make_backend(d->backend)->available()) continue;
        if (log_) std::fprintf(stderr, "profiling %s for placement on %s\n", c.name.c_str(), d->str().c_str());
        GraphModule m = load((fs::path(out_) / c.file).string());
        ProfileOptions po;
        po.threads = d->threads;
        po.batches = {r_.batch};
        po.max_seconds = r_.max_seconds;
        po.node_runs = 3;
        po.isa = r_.isa;
        c.add_profile(profile(*m, d->backend, shape_, po));
      }
      planned.variants.push_back(c);
    }
    manifest_.save(manifest_path_);
    for (const auto& link : spec.links) {
      try {
        place::Plan plan = place::plan(planned, out_, spec.edge, spec.cloud, link, spec.objective);
        GraphModule m = load((fs::path(out_) / plan.chosen.file).string());
        place::export_plan(plan, *m, (fs::path(out_) / "placement" / link.name).string());
        result_.plans.push_back(std::move(plan));
      } catch (const Error& e) {
        result_.placement_failures.push_back(link.name + ": " + e.message());
        if (log_) std::fprintf(stderr, "tailor: placement on %s: %s\n", link.name.c_str(), e.message().c_str());
      }
    }
  }

  std::string summary() const {
    std::ostringstream t;
    char line[512];
    std::snprintf(line, sizeof line, "%-22s %9s %9s %10s %8s", "variant", "params", "MACs", "weights", "top-1 %");
    t << line;
    for (const auto& b : r_.backends) {
      std::snprintf(line, sizeof line, " %14s", (b + " ms").c_str());
      t << line;
    }
    for (const auto& [b, tables] : tables_) {
      std::snprintf(line, sizeof line, " %14s", ("predicted " + b).c_str());
      t << line;
    }
    t << "  notes\n";
    for (const auto& c : manifest_.variants) {
      auto count = [&](int64_t v, const char* unit) { return size_or_dash(c, v, unit); };
      std::snprintf(line, sizeof line, "%-22s %9s %9s %10s %8s", c.name.c_str(), count(c.params, "").c_str(),
                    count(c.macs, "").c_str(), count(c.weight_bytes, "B").c_str(),
                    c.accuracy ? short_number(100 * *c.accuracy).c_str() : "-");
      t << line;
      for (const auto& b : r_.backends) {
        const auto* p = profile_of(c, b);
        std::snprintf(line, sizeof line, " %14s", p ? short_number(p->latency.p50_ms).c_str() : "-");
        t << line;
      }
      for (const auto& [b, tables] : tables_) {
        const auto it = c.predicted_ms.find(b);
        std::snprintf(line, sizeof line, " %14s", it != c.predicted_ms.end() ? short_number(it->second).c_str() : "-");
        t << line;
      }
      const bool k = std::find(result_.kept.begin(), result_.kept.end(), c.name) != result_.kept.end();
      t << "  " << (k ? "[kept] " : "") << join(c.flags, "; ") << "\n";
    }
    if (r_.max_accuracy_drop || !r_.latency_ms.empty() || !r_.predicted_latency_ms.empty())
      t << (result_.kept.empty() ? "No variant meets the goals; everything measured is in the report.\n"
                                 : "Meeting the goals, fastest first: " + join(result_.kept) + "\n");
    else
      t << "Pareto front (" << r_.backends.front() << "), fastest first: " << join(result_.kept) << "\n";
    for (const auto& p : result_.plans)
      t << "Placement on " << p.link.name << ": " << p.chosen.variant << ", " << place::to_string(p.chosen.best.site)
        << (p.chosen.best.site == place::Site::Split ? " (" + p.chosen.best.method + ")" : "") << ", predicted "
        << p.objective.percentile << " " << short_number(p.chosen.best.predicted.total_ms) << " ms\n";
    for (const auto& f : result_.placement_failures) t << "No placement on " << f << "\n";
    return t.str();
  }

  const Recipe& r_;
  const RunOptions& opt_;
  const std::string out_;
  const fs::path variants_dir_;
  const std::string manifest_path_, steps_path_, base_file_;
  const bool log_;
  const size_t total_;
  const std::chrono::steady_clock::time_point start_;
  nlohmann::json steps_ = nlohmann::json::object();
  Manifest manifest_;
  RunResult result_;
  std::string base_key_;
  bool has_data_ = false;
  data::Dataset test_;
  std::vector<torch::Tensor> calibration_, calibration_labels_;
  int threads_ = 1;
  std::map<std::string, std::vector<latency::Model>> tables_;  // by backend
  std::vector<int64_t> shape_;
  size_t done_ = 0;
  VariantCard base_card_;
  std::vector<std::pair<std::string, std::vector<std::string>>> finished_ = {{"baseline", {}}};
};

}  // namespace

RunResult run_recipe(const Recipe& recipe, const RunOptions& options) { return RecipeRun(recipe, options).run(); }

}  // namespace tailor::recipe
