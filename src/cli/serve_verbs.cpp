// `tailor serve` (an Open Inference Protocol gRPC server), `tailor run-plan` (the edge runtime of a plan, against a
// server) and `tailor simulate` (a fleet of edge devices against one server, simulated).
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <pthread.h>

#include "../core/json_number.hpp"
#include "cli.hpp"
#include "tailor/place/simulate.hpp"
#if TAILOR_WITH_SERVE
#include "tailor/serve/serve.hpp"
#endif

namespace tailor::cli {
namespace {

nlohmann::json stats_json(const LatencyStats& s) {
  return {{"p50", s.p50_ms}, {"p90", s.p90_ms}, {"p99", s.p99_ms}, {"mean", s.mean_ms}, {"max", s.max_ms}};
}

// ---- simulate

struct SimulateArgs {
  std::string plan, arrivals = "closed", html, percentile, draws = "replay";
  std::vector<int> devices = {1, 2, 4, 8, 16, 32};
  int executors = 1;
  int64_t requests = 400;
  double overhead_ms = 0, latency_ms = 0, measure_seconds = 10;
  bool measure = false, json = false, all = true;
  uint64_t seed = 0;
};

// A part's service time measured on its device (the Profiler's timing loop) for `seconds` and at least 200 runs,
// the runs kept in order, for --measure. Seconds, not a run count: the machine's slow spells last seconds, and
// replay only reproduces those the measurement saw.
place::ServiceTime measure_part(const place::PlanFolder& plan, const std::string& part, double seconds,
                                bool replay) {
  auto exe = plan.compile(part);
  std::vector<c10::IValue> inputs;
  for (const auto& s : exe->options().input_shapes) inputs.emplace_back(torch::randn(s));
  ProfileOptions po;
  po.min_runs = 200;
  po.max_runs = 1000000;
  po.max_seconds = seconds;
  po.tolerance = -1;  // never settles: the whole time is measured
  std::vector<double> runs;
  time_executable(*exe, inputs, po, nullptr, &runs);
  const auto t = place::ServiceTime::from_sequence(std::move(runs));
  return replay ? t : t.independent();
}

int simulate_cmd(const SimulateArgs& a) {
  const place::PlanFolder plan = place::PlanFolder::read(a.plan);
  const std::string& path = plan.path;
  const auto arrivals = place::Arrivals::parse(a.arrivals);
  TAILOR_CHECK(a.draws == "replay" || a.draws == "independent", "--draws must be replay or independent, not '",
               a.draws, "'");
  TAILOR_CHECK(a.measure_seconds > 0 && std::isfinite(a.measure_seconds), "--measure-seconds must be positive");
  // Spread of each site's service time: measured on the plan's own parts, or none (the predicted time each request).
  std::optional<place::ServiceTime> edge_spread, cloud_spread;
  std::string source = "predicted per-node times, no spread";
  if (a.measure) {
    // oneDNN takes one ISA cap per process: a part whose device has a cap is measured first, and a part this
    // process can no longer run as its device would keeps its predicted times.
    std::vector<std::string> order{"edge", "cloud"};
    if (plan.edge.isa.empty() && !plan.cloud.isa.empty()) std::swap(order[0], order[1]);
    const auto cpu = cpu_isas();
    std::vector<std::string> kept;
    for (const std::string& part : order) {
      if (plan.file_of(part).empty()) continue;
      const place::Device& device = plan.device_of(part);
      if (device.isa.empty() && !cpu.empty() && effective_isa() != cpu.back()) {
        kept.push_back(fmt::format("{} part: its device runs this CPU's best ISA ({}), this process is capped at {}",
                                   part, cpu.back(), effective_isa()));
        continue;
      }
      try {
        (part == "edge" ? edge_spread : cloud_spread) =
            measure_part(plan, part, a.measure_seconds, a.draws == "replay");
      } catch (const Error& e) {
        kept.push_back(fmt::format("{} part: {}", part, e.message()));
      }
    }
    source = std::string(kept.empty() ? "spread measured on the plan's parts"
                                      : "spread measured where this process can run the part as its device would") +
             (a.draws == "replay" ? ", runs replayed in time" : ", drawn independently");
    for (const auto& why : kept)
      std::cerr << "tailor simulate --measure: predicted times kept for the " << why << "\n";
  }
  auto setup = place::fleet_setup(plan.json, path, a.all, edge_spread, cloud_spread);
  auto& objective = setup.objective;
  if (!a.percentile.empty()) objective.percentile = a.percentile;
  TAILOR_CHECK(objective.percentile == "p50" || objective.percentile == "p90", "--percentile must be p50 or p90");
  if (a.latency_ms > 0) objective.latency_ms = a.latency_ms;
  const auto& link = setup.link;
  std::vector<place::FleetResult> results;
  for (auto& s : setup.scenarios) {
    s.overhead_ms = a.overhead_ms;
    s.executors = a.executors;
    s.arrivals = arrivals;
    s.requests = a.requests;
    s.seed = a.seed;
    results.push_back(place::simulate_fleet(s, a.devices, objective));
  }
  if (!a.html.empty())
    write_file_atomically(a.html, "<!doctype html><meta charset=\"utf-8\"><title>tailor fleet simulation</title>"
                                  "<style>body{font-family:sans-serif}td,th{padding:2px 8px}tr.miss{color:#a33}</style>\n" +
                                      place::render_fleet_html(results, objective));
  if (a.json) {
    nlohmann::json out = {{"plan", a.plan}, {"service_times", source}, {"placements", nlohmann::json::array()}};
    for (const auto& r : results) out["placements"].push_back(nlohmann::json::parse(r.to_json()));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("fleet simulation of {} ({}; {} executor(s); {}; link {})\n", a.plan, arrivals.str(),
                           a.executors, source, link.str());
  for (const auto& r : results) {
    std::cout << fmt::format("\n{}: edge {} ms, cloud {} ms per request\n", r.scenario.name,
                             short_number(r.scenario.edge.median()), short_number(r.scenario.cloud.median()));
    std::cout << fmt::format("  {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11}\n", "devices", "p50 ms", "p90 ms", "p99 ms",
                             "req/s", "busy", "queue p99");
    for (const auto& p : r.points)
      std::cout << fmt::format("  {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}% {:>11}{}\n", p.devices,
                               short_number(p.latency.p50_ms), short_number(p.latency.p90_ms),
                               short_number(p.latency.p99_ms), short_number(p.throughput),
                               static_cast<int>(std::lround(100 * p.utilisation)), short_number(p.queue_p99_ms),
                               p.meets ? "" : "  misses the objective");
    if (objective.latency_ms)
      std::cout << (r.breaks_at ? fmt::format("  breaks the objective ({} <= {} ms) at {} devices\n",
                                              objective.percentile, short_number(*objective.latency_ms), *r.breaks_at)
                                : fmt::format("  meets the objective ({} <= {} ms) at every size simulated\n",
                                              objective.percentile, short_number(*objective.latency_ms)));
  }
  return 0;
}

#if TAILOR_WITH_SERVE
// ---- serve

struct ServeArgs {
  std::vector<std::string> models;
  std::string repository, write_repository, listen = "127.0.0.1", isa, stats;
  int port = 8001, executors = 2, queue = 64, max_shapes = 4;
  double max_request_mb = 64;
  bool quiet = false;
};

int serve_cmd(const ServeArgs& a) {
  std::vector<serve::ModelSpec> specs;
  for (const auto& m : a.models) specs.push_back(serve::ModelSpec::parse(m));
  if (!a.repository.empty())
    for (auto& s : serve::read_model_repository(a.repository)) specs.push_back(std::move(s));
  if (!a.write_repository.empty()) {
    serve::write_model_repository(a.write_repository, specs, a.executors);
    if (!a.quiet) std::cerr << "wrote the model repository " << a.write_repository << "\n";
    return 0;
  }
  serve::ServerOptions options;
  options.address = fmt::format("{}:{}", a.listen, a.port);
  options.executors = a.executors;
  options.queue_limit = a.queue;
  options.max_request_bytes = static_cast<int64_t>(a.max_request_mb * (1 << 20));
  options.max_shapes = a.max_shapes;
  options.isa = a.isa;
  // Every thread the server starts inherits this mask, so SIGTERM and SIGINT reach only the sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  serve::Server server(specs, options);
  server.start();
  std::cout << fmt::format("serving {} model{} on {}:{} ({} executor{}, queue {})", specs.size(),
                           specs.size() == 1 ? "" : "s", a.listen, server.port(), a.executors,
                           a.executors == 1 ? "" : "s", a.queue)
            << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  if (!a.quiet) std::cerr << "tailor serve: " << (received == SIGTERM ? "SIGTERM" : "SIGINT") << ", shutting down\n";
  server.shutdown(5);
  const std::string stats = server.statistics_json();
  if (!a.stats.empty()) write_file_atomically(a.stats, stats + "\n");
  if (!a.quiet) std::cerr << stats << "\n";
  return 0;
}

// ---- run-plan

struct RunPlanArgs {
  std::string plan, server, model = "cloud", link, data = "random", reference;
  int64_t requests = 20, warmup = 3;
  int clients = 1, retries = 3;
  double deadline_ms = 30000;
  bool no_emulate = false, no_exits = false, json = false, quiet = false;
  uint64_t seed = 0;
};

int run_plan_cmd(const RunPlanArgs& a) {
  TAILOR_CHECK(a.requests > 0 && a.clients > 0, "--requests and --clients must be positive");
  TAILOR_CHECK(a.data == "random" || a.data == "fashion-mnist", "--data must be random or fashion-mnist, not '",
               a.data, "'");
  serve::RunPlanOptions options;
  options.server = a.server;
  options.model = a.model;
  if (!a.link.empty()) options.link = place::Link::load(a.link);
  options.emulate = !a.no_emulate;
  options.exits = !a.no_exits;
  options.deadline_ms = a.deadline_ms;
  options.retries = a.retries;
  std::vector<serve::EdgeRuntime> runtimes;
  for (int c = 0; c < a.clients; ++c) {
    options.seed = a.seed + static_cast<uint64_t>(c);
    runtimes.emplace_back(a.plan, options);
  }
  const auto shapes = runtimes[0].input_shapes();
  TAILOR_CHECK(a.data == "random" || (shapes.size() == 1 && shapes[0].size() == 4 && shapes[0][1] == 1 &&
                                      shapes[0][2] == 28 && shapes[0][3] == 28),
               "--data fashion-mnist needs a plan for Nx1x28x28 inputs, not ", shape_to_string(shapes[0]));
  const int64_t batch = shapes[0].empty() ? 1 : shapes[0][0];
  // Inputs: random normal, or the Fashion-MNIST test split in order (each client its own slice).
  std::optional<data::Dataset> test;
  if (a.data == "fashion-mnist") test = data::load_fashion_mnist(data::Split::Test);
  auto input = [&](int client, int64_t k, torch::Tensor* labels) {
    if (!test) {
      torch::manual_seed(a.seed * 1000003 + static_cast<uint64_t>(client) * 7919 + static_cast<uint64_t>(k));
      std::vector<torch::Tensor> in;
      for (const auto& s : shapes) in.push_back(torch::randn(s));
      return in;
    }
    const int64_t n = test->images.size(0);
    const int64_t start = ((static_cast<int64_t>(client) * a.requests + k) * batch) % std::max<int64_t>(1, n - batch);
    if (labels) *labels = test->labels.narrow(0, start, batch);
    return std::vector<torch::Tensor>{test->images.narrow(0, start, batch).contiguous()};
  };
  std::optional<GraphModule> reference;
  if (!a.reference.empty()) reference = tailor::load(a.reference);
  struct Record {
    serve::RequestTiming timing;
    bool correct = false;
    double rel_diff = 0;
  };
  std::vector<std::vector<Record>> records(a.clients);
  std::mutex error_mutex;
  std::string first_error;
  const auto t0 = std::chrono::steady_clock::now();
  auto client_loop = [&](int c) {
    try {
      for (int64_t k = 0; k < a.warmup; ++k) runtimes[c].run(input(c, k, nullptr));  // untimed: first runs are slow
      for (int64_t k = 0; k < a.requests; ++k) {
        torch::Tensor labels;
        const auto in = input(c, k, test ? &labels : nullptr);
        Record r;
        const auto out = runtimes[c].run(in, &r.timing);
        if (test) r.correct = out[0].argmax(1).eq(labels).all().item<bool>();
        if (reference && r.timing.exit.empty()) {
          torch::NoGradGuard no_grad;
          std::vector<c10::IValue> iv(in.begin(), in.end());
          const c10::IValue whole = (*reference)->run(iv);
          const torch::Tensor expected = whole.isTensor() ? whole.toTensor() : whole.toTupleRef().elements()[0].toTensor();
          r.rel_diff = ((out[0] - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item<double>();
        }
        records[c].push_back(r);
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (first_error.empty()) first_error = fmt::format("client {}: {}", c, e.what());
    }
  };
  if (a.clients == 1) {
    client_loop(0);
  } else {
    std::vector<std::thread> threads;
    for (int c = 0; c < a.clients; ++c) threads.emplace_back(client_loop, c);
    for (auto& t : threads) t.join();
  }
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  TAILOR_CHECK(first_error.empty(), first_error);
  std::vector<double> total, edge, encode, network, emulated, link, queue, compute, decode;
  int64_t exits = 0, correct = 0, n = 0, up = 0, down = 0;
  double max_rel = 0;
  for (const auto& list : records)
    for (const auto& r : list) {
      ++n;
      total.push_back(r.timing.total_ms);
      edge.push_back(r.timing.edge_ms);
      if (!r.timing.exit.empty()) {
        ++exits;
      } else {
        encode.push_back(r.timing.call.encode_ms);
        network.push_back(r.timing.call.network_ms);
        emulated.push_back(r.timing.call.emulated_ms);
        link.push_back(r.timing.call.link_ms);
        queue.push_back(r.timing.call.queue_ms);
        compute.push_back(r.timing.call.compute_ms);
        decode.push_back(r.timing.call.decode_ms);
        up = r.timing.call.up_bytes;
        down = r.timing.call.down_bytes;
      }
      correct += r.correct;
      max_rel = std::max(max_rel, r.rel_diff);
    }
  auto stats = [](const std::vector<double>& v) { return v.empty() ? LatencyStats{} : LatencyStats::from_samples(v); };
  const auto t = stats(total);
  const double predicted = runtimes[0].predicted_ms();
  nlohmann::json out = {
      {"plan", a.plan},
      {"server", a.server},
      {"link", runtimes[0].link().name},
      {"emulated_link", !a.no_emulate},
      {"clients", a.clients},
      {"requests", n},
      {"total_ms", stats_json(t)},
      {"predicted_ms", predicted},
      {"measured_over_predicted_p50", predicted > 0 ? t.p50_ms / predicted : 0},
      {"throughput_per_s", static_cast<double>(n) / wall_s},
      {"breakdown_ms_mean",
       {{"edge", stats(edge).mean_ms},
        {"encode", stats(encode).mean_ms},
        {"network", stats(network).mean_ms},
        {"of_which_emulated", stats(emulated).mean_ms},
        {"link", stats(link).mean_ms},
        {"server_queue", stats(queue).mean_ms},
        {"cloud_compute", stats(compute).mean_ms},
        {"decode", stats(decode).mean_ms}}},
      {"breakdown_ms_p50",
       {{"edge", stats(edge).p50_ms},
        {"network", stats(network).p50_ms},
        {"server_queue", stats(queue).p50_ms},
        {"cloud_compute", stats(compute).p50_ms}}},
      {"up_bytes", up},
      {"down_bytes", down},
      {"exit_rate", n ? static_cast<double>(exits) / static_cast<double>(n) : 0}};
  if (test) out["top1"] = n ? static_cast<double>(correct) / static_cast<double>(n) : 0;
  if (reference) out["max_rel_diff_vs_reference"] = max_rel;
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} requests through {} ({} client{}, link {}{}): p50 {} ms, p90 {} ms, p99 {} ms; "
                           "predicted {} ms (measured/predicted {:.3f}); {} req/s\n",
                           n, a.plan, a.clients, a.clients == 1 ? "" : "s", runtimes[0].link().str(),
                           a.no_emulate ? ", not emulated" : "", short_number(t.p50_ms), short_number(t.p90_ms),
                           short_number(t.p99_ms), short_number(predicted), predicted > 0 ? t.p50_ms / predicted : 0,
                           short_number(static_cast<double>(n) / wall_s));
  std::cout << fmt::format("  mean: edge {} + encode {} + network {} (link {}, emulated {}) + server queue {} + "
                           "cloud {} + decode {} ms\n",
                           short_number(stats(edge).mean_ms), short_number(stats(encode).mean_ms),
                           short_number(stats(network).mean_ms), short_number(stats(link).mean_ms),
                           short_number(stats(emulated).mean_ms),
                           short_number(stats(queue).mean_ms), short_number(stats(compute).mean_ms),
                           short_number(stats(decode).mean_ms));
  if (exits) std::cout << fmt::format("  {:.1f}% answered by an early exit on the edge\n", 100.0 * exits / n);
  if (test) std::cout << fmt::format("  top-1 {:.2f}%\n", 100.0 * correct / n);
  if (reference) std::cout << fmt::format("  largest relative difference from {}: {:.3g}\n", a.reference, max_rel);
  return 0;
}
#endif

}  // namespace

void add_serve_verbs(CLI::App& app, std::vector<std::function<int()>>& actions) {
  {
    auto a = std::make_shared<SimulateArgs>();
    auto* sub = app.add_subcommand("simulate", "simulate a fleet of edge devices sending requests to one server for "
                                   "each placement of a plan: latency, throughput, utilisation, where it breaks");
    sub->add_option("plan", a->plan, "plan folder (tailor place -o)")->required();
    sub->add_option("--devices", a->devices, "fleet sizes to simulate")->delimiter(',');
    sub->add_option("--executors", a->executors, "server executors (requests computed at once)");
    sub->add_option("--arrivals", a->arrivals, "closed[:THINK_MS], poisson:RATE (per device per second) or trace:FILE");
    sub->add_option("--requests", a->requests, "requests measured per fleet size (after a 10% warm-up)");
    sub->add_option("--overhead-ms", a->overhead_ms, "per-request cost outside compute and the link (RPC stack)");
    sub->add_option("--latency-ms", a->latency_ms, "the objective's latency (default: the plan's)");
    sub->add_option("--percentile", a->percentile, "p50 or p90 (default: the plan's)");
    sub->add_flag("--measure", a->measure, "measure the spread of the plan's edge and cloud parts on their devices");
    sub->add_option("--measure-seconds", a->measure_seconds, "with --measure: seconds of runs per part (default 10)");
    sub->add_option("--draws", a->draws, "with --measure: replay (the measured runs in time order, so slow spells "
                    "stay together; default) or independent (draws from their distribution)");
    sub->add_flag("!--all-placements", a->all, "simulate only the chosen placement");
    sub->add_option("--seed", a->seed, "random seed");
    sub->add_option("--html", a->html, "write an HTML page with the table and a latency-vs-devices plot");
    sub->add_flag("--json", a->json, "print the results as JSON");
    actions.push_back([sub, a]() -> int { return sub->parsed() ? simulate_cmd(*a) : -1; });
  }
#if TAILOR_WITH_SERVE
  {
    auto a = std::make_shared<ServeArgs>();
    auto* sub = app.add_subcommand("serve", "serve TorchScript models (whole models or plans' cloud parts) over the "
                                   "Open Inference Protocol (KServe v2 gRPC) until SIGTERM");
    sub->add_option("--model", a->models, "NAME=FILE[,backend=B][,threads=N][,input=SHAPE] (repeat)");
    sub->add_option("--repository", a->repository, "serve every NAME/1/model.pt of a model repository (Triton layout)");
    sub->add_option("--write-repository", a->write_repository, "write the --model files as a model repository "
                    "(config.pbtxt for Triton's PyTorch backend) and exit");
    sub->add_option("--port", a->port, "port (0: any free port; the line printed at start says which)");
    sub->add_option("--listen", a->listen, "address to bind; loopback unless you name another on purpose");
    sub->add_option("--executors", a->executors, "requests computed at once, each on its own thread");
    sub->add_option("--queue", a->queue, "requests that may wait; more are refused with RESOURCE_EXHAUSTED");
    sub->add_option("--max-request-mb", a->max_request_mb, "larger requests are refused with RESOURCE_EXHAUSTED");
    sub->add_option("--max-shapes", a->max_shapes, "executables (batch sizes) compiled per model");
    sub->add_option("--isa", a->isa, "cap the x86 ISA of CPU kernels (avx2, avx512_core, ...)");
    sub->add_option("--stats", a->stats, "write per-model statistics (JSON) here at shutdown");
    sub->add_flag("-q,--quiet", a->quiet, "no statistics on stderr at shutdown");
    actions.push_back([sub, a]() -> int { return sub->parsed() ? serve_cmd(*a) : -1; });
  }
  {
    auto a = std::make_shared<RunPlanArgs>();
    auto* sub = app.add_subcommand("run-plan", "run a plan's edge part here and its cloud part on an OIP server, "
                                   "and report the measured breakdown against the plan's prediction");
    sub->add_option("plan", a->plan, "plan folder (tailor place -o)")->required();
    sub->add_option("--server", a->server, "HOST:PORT of the server holding the cloud part");
    sub->add_option("--model", a->model, "the cloud part's name on the server");
    sub->add_option("--link", a->link, "emulate this link instead of the plan's (YAML file or inline)");
    sub->add_flag("--no-emulate", a->no_emulate, "send at loopback speed (no link emulation)");
    sub->add_flag("--no-exits", a->no_exits, "never answer on the edge from an early exit");
    sub->add_option("--data", a->data, "inputs: random or fashion-mnist (test split; reports top-1)");
    sub->add_option("--requests", a->requests, "requests per client");
    sub->add_option("--warmup", a->warmup, "untimed requests per client first");
    sub->add_option("--clients", a->clients, "concurrent edge clients (closed loop), each with its own runtime");
    sub->add_option("--reference", a->reference, "the unsplit model: report the largest relative difference");
    sub->add_option("--retries", a->retries, "retries of a call the server could not take (UNAVAILABLE)");
    sub->add_option("--deadline-ms", a->deadline_ms, "per call");
    sub->add_option("--seed", a->seed, "random inputs and jitter");
    sub->add_flag("--json", a->json, "print the report as JSON");
    actions.push_back([sub, a]() -> int { return sub->parsed() ? run_plan_cmd(*a) : -1; });
  }
#endif
}

}  // namespace tailor::cli
