// Targets, budgets and the search: costs and predicted latencies per candidate, regularized evolution and random
// search, resumable state, the Pareto front and its re-measurement on the real targets.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/nas/nas.hpp"
#include "tailor/pass/options.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor::nas {
using json = nlohmann::json;
using models::ArchConfig;
using models::SearchSpace;

latency::Target parse_target(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  TAILOR_CHECK(!parts.empty() && !parts[0].empty() && parts.size() <= 4, "target '", text,
               "' is not backend[:threads[:isa][:int8]] (e.g. onednn-cpu, onednn-cpu:2, onednn-cpu:1:avx2)");
  int threads = 1;
  if (parts.size() > 1) {
    try {
      size_t used = 0;
      threads = std::stoi(parts[1], &used);
      TAILOR_CHECK(used == parts[1].size(), "");
    } catch (const std::exception&) {
      TAILOR_FAIL("target '", text, "': threads '", parts[1], "' is not a whole number");
    }
  }
  std::string dtype = "float32", isa;
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i] == "int8" || parts[i] == "float32")
      dtype = parts[i];
    else
      isa = parts[i];
  }
  try {
    return latency::Target::here(parts[0], threads, dtype, isa);
  } catch (const Error& e) {
    TAILOR_FAIL("target '", text, "': ", e.message());
  }
}

std::shared_ptr<const latency::Model> latency_table(const std::string& target_text, const std::string& file,
                                                    const latency::Workload& workload, double minutes, bool progress) {
  const latency::Target target = parse_target(target_text);
  if (!file.empty()) {
    auto m = std::make_shared<latency::Model>(latency::Model::load(file, &target));
    TAILOR_CHECK(m->fitted(), "latency table '", file, "' holds no fitted model (its build was interrupted before "
                 "its first round ended; run the same build again to resume it)");
    return m;
  }
  TAILOR_CHECK(minutes > 0, "no latency table was given for ", target_text, " and building one was given no time");
  auto m = std::make_shared<latency::Model>(target);
  latency::BuildOptions b;
  b.target = target;
  b.workload = workload;
  b.models = 100000;
  b.max_minutes = minutes;
  b.round_size = 10;
  if (progress) {
    std::fprintf(stderr, "no latency table for %s: measuring models for %.1f minutes\n", target.str().c_str(), minutes);
    b.progress = [](int done, int, double seconds_left, const latency::ModelSample&) {
      std::fprintf(stderr, "\r  latency table: %d models, %.0f s left   ", done, seconds_left);
    };
  }
  latency::build(*m, b);
  if (progress) std::fprintf(stderr, "\n");
  TAILOR_CHECK(m->fitted(), "the latency table built for ", target_text, " in ", minutes, " minutes is not fitted; give "
               "it more time");
  return m;
}

std::vector<LatencyBudget> latency_budgets(const std::vector<double>& ms, const std::vector<std::string>& targets,
                                           const std::vector<std::string>& tables, const latency::Workload& workload,
                                           double minutes, bool progress) {
  if (ms.empty()) return {};
  TAILOR_CHECK(!targets.empty(), "a latency budget needs a target (e.g. onednn-cpu)");
  TAILOR_CHECK(ms.size() == 1 || ms.size() == targets.size(), ms.size(), " latency budgets for ", targets.size(),
               " targets: give one budget, or one per target");
  TAILOR_CHECK(tables.empty() || tables.size() == targets.size(), tables.size(), " latency tables for ",
               targets.size(), " targets: give one per target, or none (then they are built here)");
  std::vector<LatencyBudget> out;
  for (size_t i = 0; i < targets.size(); ++i) {
    LatencyBudget b;
    b.ms = ms.size() == 1 ? ms[0] : ms[i];
    TAILOR_CHECK(b.ms > 0, "the latency budget on ", targets[i], " must be positive, got ", b.ms);
    b.name = targets[i];
    b.table = latency_table(targets[i], tables.empty() ? "" : tables[i], workload, minutes, progress);
    out.push_back(b);
  }
  return out;
}

std::string Constraints::str() const {
  std::string out;
  auto add = [&out](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  for (const auto& b : latency) add("latency <= " + detail::print_number(b.ms) + " ms on " + b.name);
  if (max_macs > 0) add("MACs <= " + detail::print_number(max_macs));
  if (max_params > 0) add("params <= " + detail::print_number(max_params));
  if (max_weight_bytes > 0) add("weight bytes <= " + detail::print_number(max_weight_bytes));
  return out.empty() ? "none" : out;
}

std::string Candidate::json() const {
  nlohmann::json j = {{"config", config.str()},   {"accuracy", accuracy},         {"predicted_ms", predicted_ms},
                      {"measured_ms", measured_ms}, {"macs", macs}, {"params", params},
                      {"weight_bytes", weight_bytes}};
  return j.dump();
}

Candidate describe(const SearchSpace& space, const ArchConfig& config, const Constraints& constraints) {
  const std::string why = space.why_not(config);
  TAILOR_CHECK(why.empty(), "architecture ", config.str(), " is not in search space '", space.name, "': ", why);
  Candidate c;
  c.config = config;
  const std::vector<int64_t> shape = config.input_shape(space.in_channels);
  GraphModule m = models::capture_arch(config, space.zoo_options());
  const CostReport costs = analyze(*m, {shape});
  c.macs = static_cast<double>(costs.macs);
  c.params = static_cast<double>(costs.params);
  c.weight_bytes = static_cast<double>(costs.weight_bytes);
  for (const auto& b : constraints.latency) {
    GraphModule prepared = latency::prepare_for_target(m, shape, b.table->target());
    c.predicted_ms.push_back(b.table->predict(latency::detect_kernels(*prepared, shape, b.table->target())).total_ms);
  }
  return c;
}

bool feasible(const Candidate& c, const Constraints& k) {
  for (size_t i = 0; i < k.latency.size(); ++i)
    if (i >= c.predicted_ms.size() || c.predicted_ms[i] > k.latency[i].ms) return false;
  if (k.max_macs > 0 && c.macs > k.max_macs) return false;
  if (k.max_params > 0 && c.params > k.max_params) return false;
  if (k.max_weight_bytes > 0 && c.weight_bytes > k.max_weight_bytes) return false;
  return true;
}

std::vector<double> measure_latency(const std::vector<GraphModule>& modules,
                                    const std::vector<std::vector<int64_t>>& input_shapes,
                                    const latency::Target& target, double seconds_per_model) {
  TAILOR_CHECK(modules.size() == input_shapes.size(), "measure_latency: ", modules.size(), " models but ",
               input_shapes.size(), " input shapes");
  std::vector<std::unique_ptr<Executable>> exes;
  std::vector<Executable*> raw;
  std::vector<std::vector<c10::IValue>> inputs;
  for (size_t i = 0; i < modules.size(); ++i) {
    GraphModule prepared = latency::prepare_for_target(modules[i], input_shapes[i], target);
    exes.push_back(compile(target.backend, *prepared, latency::compile_options(input_shapes[i], target)));
    raw.push_back(exes.back().get());
    inputs.push_back(random_inputs(input_shapes[i], 0));
  }
  ProfileOptions po;
  po.threads = target.threads;
  po.warmup = 5;
  po.min_runs = 5;
  po.max_seconds = seconds_per_model;
  po.node_runs = 0;
  std::vector<double> out;
  for (const auto& s : time_interleaved(raw, inputs, po, 5)) out.push_back(s.p50_ms);
  return out;
}

const Candidate& SearchResult::best() const {
  TAILOR_CHECK(!front.empty(), "the search returned no architecture that meets its budget when measured");
  return front.front();
}

std::string SearchResult::json() const {
  auto list = [](const std::vector<Candidate>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& c : v) a.push_back(nlohmann::json::parse(c.json()));
    return a;
  };
  nlohmann::json j = {{"front", list(front)},
                      {"over_budget", list(over_budget)},
                      {"evaluated", list(evaluated)},
                      {"max_measured_over_predicted", max_measured_over_predicted},
                      {"screened", screened},
                      {"predictor_loo_rmse", predictor_loo_rmse},
                      {"resumed", resumed},
                      {"seconds", seconds}};
  if (!front.empty()) j["best"] = nlohmann::json::parse(front.front().json());
  return j.dump(2);
}

std::vector<double> AccuracyPredictor::features(const Candidate& c) const {
  const ArchConfig& a = c.config;
  std::vector<double> f{static_cast<double>(a.resolution), static_cast<double>(a.stem), static_cast<double>(a.head)};
  for (size_t i = 0; i < stages_; ++i) {
    if (i < a.stages.size()) {
      const auto& st = a.stages[i];
      for (int64_t v : {st.depth, st.width, st.kernel, st.expand}) f.push_back(static_cast<double>(v));
    } else {
      f.insert(f.end(), 4, 0.0);
    }
  }
  f.push_back(std::log(std::max(1.0, c.macs)));
  f.push_back(std::log(std::max(1.0, c.params)));
  return f;
}

void AccuracyPredictor::fit(const std::vector<Candidate>& evaluated) {
  std::vector<const Candidate*> known;
  for (const auto& c : evaluated)
    if (c.accuracy >= 0) known.push_back(&c);
  TAILOR_CHECK(known.size() >= 3, "the accuracy predictor needs at least 3 evaluated subnets, got ", known.size());
  stages_ = 0;
  for (const Candidate* c : known) stages_ = std::max(stages_, c->config.stages.size());
  const auto n = static_cast<Eigen::Index>(known.size());
  const auto dims = static_cast<Eigen::Index>(features(*known.front()).size());
  Eigen::MatrixXd x(n, dims);
  Eigen::VectorXd y(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto f = features(*known[i]);
    for (Eigen::Index j = 0; j < dims; ++j) x(i, j) = f[j];
    y(i) = known[i]->accuracy;
  }
  mean_.assign(dims, 0);
  scale_.assign(dims, 1);
  for (Eigen::Index j = 0; j < dims; ++j) {
    mean_[j] = x.col(j).mean();
    const double sd = std::sqrt((x.col(j).array() - mean_[j]).square().mean());
    // A choice that never varied tells nothing: its column is zero, whatever value a new candidate has.
    scale_[j] = sd > 1e-12 ? sd : std::numeric_limits<double>::infinity();
    x.col(j) = (x.col(j).array() - mean_[j]) / scale_[j];
  }
  intercept_ = y.mean();
  const Eigen::VectorXd centred = y.array() - intercept_;
  // Leave-one-out residuals of ridge regression in closed form: e_i = r_i / (1 - h_ii), with the intercept's 1/n.
  loo_rmse_ = std::numeric_limits<double>::infinity();
  for (double ridge : {0.01, 0.1, 1.0, 10.0, 100.0}) {
    const Eigen::MatrixXd a = x.transpose() * x + ridge * Eigen::MatrixXd::Identity(dims, dims);
    const Eigen::LDLT<Eigen::MatrixXd> solver(a);
    const Eigen::VectorXd w = solver.solve(x.transpose() * centred);
    const Eigen::MatrixXd ax = solver.solve(x.transpose());
    double sum = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double h = x.row(i).dot(ax.col(i)) + 1.0 / static_cast<double>(n);
      const double r = centred(i) - x.row(i).dot(w);
      const double e = r / std::max(1e-6, 1 - h);
      sum += e * e;
    }
    const double rmse = std::sqrt(sum / static_cast<double>(n));
    if (rmse < loo_rmse_) {
      loo_rmse_ = rmse;
      ridge_ = ridge;
      weights_.assign(w.data(), w.data() + dims);
    }
  }
}

double AccuracyPredictor::predict(const Candidate& c) const {
  TAILOR_CHECK(fitted(), "the accuracy predictor is not fitted");
  const auto f = features(c);
  double out = intercept_;
  for (size_t j = 0; j < weights_.size() && j < f.size(); ++j) out += weights_[j] * (f[j] - mean_[j]) / scale_[j];
  return out;
}

namespace {

// Evaluations so far, kept in a JSON file that a later run with the same settings resumes from.
class SearchState {
 public:
  SearchState(std::string file, std::string key) : file_(std::move(file)), key_(std::move(key)) {
    if (file_.empty() || !std::filesystem::exists(file_)) return;
    std::ifstream in(file_);
    json j;
    try {
      in >> j;
    } catch (const json::exception& e) {
      TAILOR_FAIL("search state '", file_, "' is not valid JSON: ", e.what());
    }
    TAILOR_CHECK(j.value("key", std::string()) == key_, "search state '", file_, "' belongs to another search (other "
                 "space, constraints or options); give another state file or delete this one");
    for (const auto& e : j.at("evaluated")) accuracy_[e.at("config").get<std::string>()] = e.at("accuracy").get<double>();
  }
  const double* find(const std::string& config) const {
    auto it = accuracy_.find(config);
    return it == accuracy_.end() ? nullptr : &it->second;
  }
  void add(const std::string& config, double accuracy) {
    accuracy_[config] = accuracy;
    if (file_.empty()) return;
    json j = {{"key", key_}, {"evaluated", json::array()}};
    for (const auto& [c, a] : accuracy_) j["evaluated"].push_back({{"config", c}, {"accuracy", a}});
    write_file_atomically(file_, j.dump(1));
  }

 private:
  std::string file_, key_;
  std::map<std::string, double> accuracy_;
};

double latency_key(const Candidate& c) { return c.predicted_ms.empty() ? c.macs : c.predicted_ms.front(); }

// Non-dominated candidates by (accuracy up, first latency or MACs down), most accurate first.
std::vector<Candidate> pareto(std::vector<Candidate> all) {
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    return latency_key(a) != latency_key(b) ? latency_key(a) < latency_key(b) : a.accuracy > b.accuracy;
  });
  std::vector<Candidate> front;
  double best = -1;
  for (const auto& c : all)
    if (c.accuracy > best) {
      front.push_back(c);
      best = c.accuracy;
    }
  std::reverse(front.begin(), front.end());
  return front;
}

}  // namespace

SearchResult search(const SearchSpace& space, const Constraints& constraints, const Evaluator& evaluate,
                    const SearchOptions& o) {
  TAILOR_CHECK(o.algorithm == "evolution" || o.algorithm == "random", "search algorithm '", o.algorithm,
               "' is not evolution or random");
  TAILOR_CHECK(o.evaluations > 0, "search: evaluations must be positive, got ", o.evaluations);
  TAILOR_CHECK(o.algorithm != "evolution" || (o.population > 0 && o.tournament > 0),
               "search: population (", o.population, ") and tournament (", o.tournament, ") must be positive");
  TAILOR_CHECK(o.max_tries > 0, "search: max_tries must be positive");
  for (const auto& b : constraints.latency)
    TAILOR_CHECK(b.table && b.ms > 0, "search: the latency budget on ", b.name, " needs a table and a positive budget");
  const auto start = std::chrono::steady_clock::now();
  std::mt19937_64 rng(o.seed);

  std::map<std::string, Candidate> described;
  auto describe_cached = [&](const ArchConfig& a) -> const Candidate& {
    const std::string key = a.str();
    auto it = described.find(key);
    if (it == described.end()) it = described.emplace(key, describe(space, a, constraints)).first;
    return it->second;
  };
  const Candidate* fastest = nullptr;
  auto note_fastest = [&](const Candidate& c) {
    if (!fastest || latency_key(c) < latency_key(*fastest)) fastest = &c;
  };
  auto infeasible = [&](const std::string& what) {
    std::string detail;
    if (fastest) {
      detail = "; the fastest architecture found, " + fastest->config.str() + ", has ";
      for (size_t i = 0; i < constraints.latency.size(); ++i)
        detail += (i ? ", " : "") + detail::print_number(fastest->predicted_ms[i]) + " ms predicted on " +
                  constraints.latency[i].name;
      if (constraints.latency.empty()) detail += detail::print_number(fastest->macs) + " MACs";
      detail += ", " + detail::print_number(fastest->params) + " params";
    }
    TAILOR_FAIL("no architecture of search space '", space.name, "' meets ", constraints.str(), " (", what, ")",
                detail);
  };
  // The smallest architecture first: when even it misses the budget, no search can meet it.
  {
    const Candidate& smallest = describe_cached(space.smallest());
    note_fastest(smallest);
    if (!feasible(smallest, constraints)) infeasible("not even the smallest one");
  }
  auto draw = [&](const std::function<ArchConfig()>& gen) -> const Candidate* {
    for (int t = 0; t < o.max_tries; ++t) {
      const Candidate& c = describe_cached(gen());
      note_fastest(c);
      if (feasible(c, constraints)) return &c;
    }
    return nullptr;
  };

  const std::string key = space.to_json() + "|" + constraints.str() + "|" + o.algorithm + "|" +
                          std::to_string(o.evaluations) + "|" + std::to_string(o.population) + "|" +
                          std::to_string(o.tournament) + "|" + detail::print_number(o.mutation) + "|" +
                          std::to_string(o.seed) + (o.algorithm == "evolution" && o.screen > 1
                                                        ? "|screen " + std::to_string(o.screen) : std::string());
  SearchState state(o.state, key);
  SearchResult result;
  std::set<std::string> seen;
  double evaluation_seconds = 0;
  int fresh = 0;
  auto evaluate_one = [&](const Candidate& c) -> Candidate {
    Candidate out = c;
    const std::string text = c.config.str();
    if (const double* a = state.find(text)) {
      out.accuracy = *a;
      ++result.resumed;
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      out.accuracy = evaluate(c.config);
      evaluation_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++fresh;
      state.add(text, out.accuracy);
    }
    seen.insert(text);
    result.evaluated.push_back(out);
    if (o.progress) {
      const int done = static_cast<int>(result.evaluated.size());
      const double per = fresh > 0 ? evaluation_seconds / fresh : 0;
      o.progress(done, o.evaluations, per * (o.evaluations - done), out);
    }
    return out;
  };
  // A configuration evaluated already is drawn again at most this often before the search settles for it.
  const int max_draws = 20 * o.evaluations + 100;
  int draws = 0;
  auto fresh_or_any = [&](const std::function<ArchConfig()>& gen) -> const Candidate* {
    const Candidate* c = nullptr;
    for (int t = 0; t < 20; ++t) {
      c = draw(gen);
      ++draws;
      if (!c || !seen.count(c->config.str())) return c;
    }
    return c;
  };
  auto random_config = [&] { return space.sample(rng); };

  if (o.algorithm == "random") {
    while (static_cast<int>(result.evaluated.size()) < o.evaluations && draws < max_draws) {
      const Candidate* c = fresh_or_any(random_config);
      if (!c) infeasible(std::to_string(o.max_tries) + " random draws missed it");
      evaluate_one(*c);
    }
  } else {
    // Regularized (aging) evolution, Real et al. 2019: the parent is the best of a random tournament, the child
    // replaces the oldest member.
    std::deque<Candidate> population;
    while (static_cast<int>(population.size()) < o.population &&
           static_cast<int>(result.evaluated.size()) < o.evaluations && draws < max_draws) {
      const Candidate* c = fresh_or_any(random_config);
      if (!c) infeasible(std::to_string(o.max_tries) + " random draws missed it");
      population.push_back(evaluate_one(*c));
    }
    auto tournament_winner = [&]() -> ArchConfig {
      std::vector<size_t> idx(population.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::shuffle(idx.begin(), idx.end(), rng);
      const Candidate* parent = &population[idx[0]];
      for (int t = 1; t < o.tournament && t < static_cast<int>(idx.size()); ++t)
        if (population[idx[t]].accuracy > parent->accuracy) parent = &population[idx[t]];
      return parent->config;
    };
    AccuracyPredictor predictor;
    while (static_cast<int>(result.evaluated.size()) < o.evaluations && draws < max_draws) {
      const Candidate* child = nullptr;
      if (o.screen > 1 && result.evaluated.size() >= 3) {
        // Many children are proposed and only the one the predictor ranks first is evaluated: a supernet's
        // evaluation costs seconds, a latency prediction milliseconds.
        predictor.fit(result.evaluated);
        result.predictor_loo_rmse = predictor.loo_rmse();
        double best = -std::numeric_limits<double>::infinity();
        for (int k = 0; k < o.screen; ++k) {
          const ArchConfig parent_config = tournament_winner();
          const Candidate* c = draw([&] { return space.mutate(parent_config, rng, o.mutation); });
          ++draws;
          if (!c || seen.count(c->config.str())) continue;
          ++result.screened;
          const double predicted = predictor.predict(*c);
          if (predicted > best) {
            best = predicted;
            child = c;
          }
        }
      }
      if (!child) {
        const ArchConfig parent_config = tournament_winner();
        child = fresh_or_any([&] { return space.mutate(parent_config, rng, o.mutation); });
      }
      if (!child) child = fresh_or_any(random_config);
      if (!child) infeasible(std::to_string(o.max_tries) + " draws missed it");
      population.push_back(evaluate_one(*child));
      population.pop_front();
    }
  }

  // The front, re-measured: members over a budget when measured leave it, and the next best take their place.
  std::map<std::string, Candidate> unique;
  for (const auto& c : result.evaluated) unique.emplace(c.config.str(), c);
  std::set<std::string> excluded, measured;
  std::map<std::string, std::vector<double>> measured_ms;
  for (int round = 0; round < 10; ++round) {
    std::vector<Candidate> pool;
    for (const auto& [k, c] : unique)
      if (!excluded.count(k)) pool.push_back(c);
    result.front = pareto(pool);
    if (!o.remeasure || constraints.latency.empty()) break;
    std::vector<Candidate*> todo;
    for (auto& c : result.front)
      if (!measured.count(c.config.str())) todo.push_back(&c);
    if (todo.empty()) break;
    std::vector<GraphModule> modules;
    std::vector<std::vector<int64_t>> shapes;
    for (const Candidate* c : todo) {
      modules.push_back(models::capture_arch(c->config, space.zoo_options()));
      shapes.push_back(c->config.input_shape(space.in_channels));
    }
    std::vector<std::vector<double>> per_target;
    for (const auto& b : constraints.latency)
      per_target.push_back(measure_latency(modules, shapes, b.table->target(), o.seconds_per_model));
    for (size_t i = 0; i < todo.size(); ++i) {
      const std::string k = todo[i]->config.str();
      measured.insert(k);
      bool over = false;
      for (size_t t = 0; t < constraints.latency.size(); ++t) {
        const double ms = per_target[t][i];
        measured_ms[k].push_back(ms);
        result.max_measured_over_predicted =
            std::max(result.max_measured_over_predicted, ms / std::max(1e-9, todo[i]->predicted_ms[t]));
        if (ms > constraints.latency[t].ms) over = true;
      }
      if (over) {
        excluded.insert(k);
        Candidate c = *todo[i];
        c.measured_ms = measured_ms[k];
        result.over_budget.push_back(c);
      }
    }
  }
  for (auto& c : result.front) {
    auto it = measured_ms.find(c.config.str());
    if (it != measured_ms.end()) c.measured_ms = it->second;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tailor::nas
