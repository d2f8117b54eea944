// Fleet simulation: a discrete-event simulation of edge devices, their links and a cloud server with K executors
// (see simulate.hpp).
#include "tailor/place/simulate.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <queue>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"

#include "svg_plot.hpp"
#include "tailor/core/text.hpp"

namespace tailor::place {

ServiceTime ServiceTime::fixed(double ms) {
  TAILOR_CHECK(ms >= 0 && std::isfinite(ms), "a service time must be a finite non-negative number, not ", ms);
  ServiceTime t;
  t.quantiles = {0, 1};
  t.ms = {ms, ms};
  return t;
}

ServiceTime ServiceTime::from_stats(const LatencyStats& s) {
  TAILOR_CHECK(s.p50_ms > 0, "a service time needs a measured p50");
  ServiceTime t;
  auto add = [&](double q, double ms) {
    if (ms <= 0) return;
    if (!t.ms.empty()) ms = std::max(ms, t.ms.back());  // a quantile function never decreases
    t.quantiles.push_back(q);
    t.ms.push_back(ms);
  };
  add(0, s.min_ms > 0 ? std::min(s.min_ms, s.p50_ms) : s.p50_ms);
  add(0.5, s.p50_ms);
  if (s.p90_ms > 0) add(0.9, s.p90_ms);
  if (s.p99_ms > 0) add(0.99, s.p99_ms);
  add(1, s.max_ms > 0 ? s.max_ms : t.ms.back());
  return t;
}

ServiceTime ServiceTime::from_sequence(std::vector<double> runs) {
  TAILOR_CHECK(!runs.empty(), "a measured service time needs at least one run");
  for (double v : runs)
    TAILOR_CHECK(v > 0 && std::isfinite(v), "a measured service time must be positive and finite, not ", v);
  ServiceTime t = from_stats(LatencyStats::from_samples(runs));
  t.sequence_ = std::move(runs);
  double end = 0;
  for (double v : t.sequence_) t.ends_.push_back(end += v);
  return t;
}

ServiceTime ServiceTime::independent() const {
  ServiceTime t = *this;
  t.sequence_.clear();
  t.ends_.clear();
  return t;
}

double ServiceTime::at(double t_ms, double offset_ms, std::mt19937_64& rng) const {
  if (sequence_.empty()) return sample(rng);
  const double total = ends_.back();
  double position = std::fmod(offset_ms + t_ms, total);
  if (position < 0) position += total;
  const size_t k = std::upper_bound(ends_.begin(), ends_.end(), position) - ends_.begin();
  return sequence_[std::min(k, sequence_.size() - 1)];
}

void ServiceTime::scale(double factor) {
  for (double& v : ms) v *= factor;
  for (double& v : sequence_) v *= factor;
  for (double& v : ends_) v *= factor;
}

double ServiceTime::sample(std::mt19937_64& rng) const {
  if (ms.empty()) return 0;
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  const size_t k = std::upper_bound(quantiles.begin(), quantiles.end(), u) - quantiles.begin();
  if (k == 0) return ms.front();
  if (k >= quantiles.size()) return ms.back();
  const double f = (u - quantiles[k - 1]) / (quantiles[k] - quantiles[k - 1]);
  return ms[k - 1] + f * (ms[k] - ms[k - 1]);
}

double ServiceTime::median() const {
  if (ms.empty()) return 0;
  for (size_t k = 1; k < quantiles.size(); ++k)
    if (quantiles[k] >= 0.5) {
      const double f = (0.5 - quantiles[k - 1]) / (quantiles[k] - quantiles[k - 1]);
      return ms[k - 1] + f * (ms[k] - ms[k - 1]);
    }
  return ms.back();
}

Arrivals Arrivals::parse(const std::string& text) {
  Arrivals a;
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon), arg = colon == std::string::npos ? "" : text.substr(colon + 1);
  auto number = [&](const char* what) {
    char* end = nullptr;
    const double v = std::strtod(arg.c_str(), &end);
    TAILOR_CHECK(!arg.empty() && end && *end == '\0' && std::isfinite(v) && v >= 0, "arrivals '", text, "': ", what,
                 " must be a non-negative number");
    return v;
  };
  if (kind == "closed") {
    a.kind = Kind::Closed;
    if (!arg.empty()) a.think_ms = number("the think time (ms)");
  } else if (kind == "poisson") {
    a.kind = Kind::Poisson;
    a.rate = number("the rate (requests per second per device)");
    TAILOR_CHECK(a.rate > 0, "arrivals '", text, "': the rate must be positive");
  } else if (kind == "trace") {
    a.kind = Kind::Trace;
    std::ifstream in(arg);
    TAILOR_CHECK(!arg.empty() && in.good(), "arrivals '", text, "': cannot read the trace file '", arg, "'");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.empty() || line[0] == '#') continue;
      char* end = nullptr;
      const double t = std::strtod(line.c_str(), &end);
      TAILOR_CHECK(end != line.c_str() && std::isfinite(t) && t >= 0, arg, ":", n, ": '", line,
                   "' is not an arrival time in ms");
      a.trace_ms.push_back(t);
    }
    TAILOR_CHECK(!a.trace_ms.empty(), "trace '", arg, "' has no arrival times");
    std::sort(a.trace_ms.begin(), a.trace_ms.end());
  } else {
    TAILOR_FAIL("unknown arrivals '", text, "' (valid: closed, closed:THINK_MS, poisson:RATE, trace:FILE)");
  }
  return a;
}

std::string Arrivals::str() const {
  switch (kind) {
    case Kind::Closed: return think_ms > 0 ? "closed loop, think " + short_number(think_ms) + " ms" : "closed loop";
    case Kind::Poisson: return "Poisson, " + short_number(rate) + "/s per device";
    case Kind::Trace: return "trace of " + std::to_string(trace_ms.size()) + " arrivals";
  }
  return "";
}

namespace {

struct Event {
  double t;
  int64_t seq;
  enum Type { Arrive, AtServer, Served, Answered } type;
  int device;
  int64_t request;
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

struct Request {
  int device;
  double arrived, at_server = 0, half_rtt = 0, service = 0, queued = 0;
};

}  // namespace

FleetSetup fleet_setup(const std::string& plan_json, const std::string& where, bool all,
                       const std::optional<ServiceTime>& edge_spread, const std::optional<ServiceTime>& cloud_spread) {
  FleetSetup setup;
  try {
    const auto plan = nlohmann::json::parse(plan_json);
    setup.link = Link::parse(plan.at("link").dump(), where);  // JSON is YAML, with the link file's keys
    const auto& o = plan.value("objective", nlohmann::json::object());
    setup.objective.percentile = o.value("percentile", "p50");
    if (o.contains("latency_ms") && o["latency_ms"].is_number()) setup.objective.latency_ms = o["latency_ms"].get<double>();
    const auto& chosen = plan.at("chosen");
    std::vector<nlohmann::json> placements = {chosen.at("placement")};
    if (all)
      for (const auto& c : chosen.value("candidates", nlohmann::json::array()))
        if (c.value("method", "") != placements[0].value("method", "") || c.value("site", "") != placements[0].value("site", ""))
          placements.push_back(c);
    double exit_rate = 0;
    for (const auto& e : chosen.value("exits", nlohmann::json::array())) exit_rate += e.value("rate", 0.0);
    auto stage = [](const std::optional<ServiceTime>& spread, double median) {
      if (!spread || spread->median() <= 0) return ServiceTime::fixed(median);
      ServiceTime t = *spread;
      t.scale(median / spread->median());
      return t;
    };
    for (size_t i = 0; i < placements.size(); ++i) {
      const auto& p = placements[i];
      const auto& predicted = p.at("predicted");
      const std::string site = p.value("site", "");
      FleetScenario s;
      s.name = site + (site == "split" ? " (" + p.value("method", "") + ")" : "") + (i == 0 ? " [chosen]" : "");
      // The spreads were measured on the chosen placement's own parts: that placement takes them as measured, the
      // others their shape scaled to their own predicted medians.
      const bool measured_here = i == 0;
      s.edge = measured_here && edge_spread ? *edge_spread : stage(edge_spread, predicted.value("edge_ms", 0.0));
      if (site != "edge")
        s.cloud = measured_here && cloud_spread ? *cloud_spread : stage(cloud_spread, predicted.value("cloud_ms", 0.0));
      s.up_bytes = tailor::detail::json_whole_or(p, "up_bytes", 0, "plan '" + where + "': placement", 0);
      s.down_bytes = tailor::detail::json_whole_or(p, "down_bytes", 0, "plan '" + where + "': placement", 0);
      s.link = setup.link;
      s.exit_rate = site == "edge" ? 0 : exit_rate;
      setup.scenarios.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    TAILOR_FAIL("plan '", where, "': ", e.what());
  }
  return setup;
}

FleetPoint simulate(const FleetScenario& s, int devices) {
  TAILOR_CHECK(devices > 0, "the fleet needs at least one device");
  TAILOR_CHECK(s.executors > 0, "the server needs at least one executor");
  const bool remote = !s.cloud.ms.empty();
  if (remote)
    TAILOR_CHECK(s.link.uplink_mbps > 0 && s.link.downlink_mbps > 0, "link '", s.link.name,
                 "' needs positive bandwidths");
  std::mt19937_64 rng(s.seed * 7919 + static_cast<uint64_t>(devices));
  std::normal_distribution<double> jitter(0, 1);
  std::bernoulli_distribution exits(std::clamp(s.exit_rate, 0.0, 1.0));
  const int64_t measured = std::max<int64_t>(s.requests, 20 * static_cast<int64_t>(devices));
  const int64_t warmup = std::max<int64_t>(measured / 10, devices);
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events;
  int64_t seq = 0;
  std::vector<Request> requests;
  std::vector<double> edge_free(devices, 0), up_free(devices, 0), down_free(devices, 0);
  auto arrive = [&](int device, double t) {
    requests.push_back({device, t});
    events.push({t, seq++, Event::Arrive, device, static_cast<int64_t>(requests.size() - 1)});
  };
  // Devices start at random offsets within one request's time, so a closed loop does not begin in lockstep.
  const double spread = s.edge.median() + s.cloud.median() + 1;
  for (int d = 0; d < devices; ++d) {
    const double offset = std::uniform_real_distribution<double>(0, spread)(rng);
    if (s.arrivals.kind == Arrivals::Kind::Trace) {
      for (double t : s.arrivals.trace_ms) arrive(d, offset + t);
    } else {
      arrive(d, offset);
    }
  }
  // Replayed sequences: the server is one machine (its executors share its speed over time), each device its own.
  auto replay_offset = [&](const ServiceTime& t) {
    return t.replays() ? std::uniform_real_distribution<double>(0, t.sequence_ms())(rng) : 0.0;
  };
  const double cloud_offset = replay_offset(s.cloud);
  std::vector<double> edge_offset(devices);
  for (double& o : edge_offset) o = replay_offset(s.edge);
  std::deque<int64_t> waiting;
  int busy = 0;
  double busy_ms = 0, first_measured = -1, last = 0;
  int64_t answered = 0;
  std::vector<double> latency, queue;
  while (!events.empty() && answered < warmup + measured) {
    const Event e = events.top();
    events.pop();
    Request& r = requests[e.request];
    auto start_service = [&](int64_t id, double t) {
      Request& q = requests[id];
      q.queued = t - q.at_server;
      q.service = s.cloud.at(t, cloud_offset, rng);
      ++busy;
      events.push({t + q.service, seq++, Event::Served, q.device, id});
    };
    switch (e.type) {
      case Event::Arrive: {
        const double start = std::max(e.t, edge_free[e.device]);
        const double done = start + s.edge.at(start, edge_offset[e.device], rng);
        edge_free[e.device] = done;
        if (!remote || exits(rng)) {
          events.push({done, seq++, Event::Answered, e.device, e.request});
        } else {
          const double sent = std::max(done, up_free[e.device]) + s.link.up_ms(s.up_bytes);
          up_free[e.device] = sent;
          r.half_rtt = std::max(0.0, s.link.rtt_ms + s.link.jitter_ms * jitter(rng)) / 2;
          r.at_server = sent + r.half_rtt + s.overhead_ms / 2;
          events.push({r.at_server, seq++, Event::AtServer, e.device, e.request});
        }
        if (s.arrivals.kind == Arrivals::Kind::Poisson)
          arrive(e.device, e.t + std::exponential_distribution<double>(s.arrivals.rate / 1000)(rng));
        break;
      }
      case Event::AtServer:
        if (busy < s.executors) start_service(e.request, e.t);
        else waiting.push_back(e.request);
        break;
      case Event::Served: {
        --busy;
        busy_ms += r.service;
        if (!waiting.empty()) {
          const int64_t next = waiting.front();
          waiting.pop_front();
          start_service(next, e.t);
        }
        const double received = std::max(e.t, down_free[e.device]) + s.link.down_ms(s.down_bytes);
        down_free[e.device] = received;
        events.push({received + r.half_rtt + s.overhead_ms / 2, seq++, Event::Answered, e.device, e.request});
        break;
      }
      case Event::Answered:
        ++answered;
        if (answered > warmup) {
          if (first_measured < 0) first_measured = e.t;
          latency.push_back(e.t - r.arrived);
          if (remote) queue.push_back(r.queued);
          last = e.t;
        } else if (answered == warmup) {
          busy_ms = 0;  // utilisation over the measured window only
          first_measured = e.t;
        }
        if (s.arrivals.kind == Arrivals::Kind::Closed) arrive(e.device, e.t + s.arrivals.think_ms);
        break;
    }
  }
  FleetPoint p;
  p.devices = devices;
  TAILOR_CHECK(!latency.empty(), "the simulation answered no request after the warm-up (a trace shorter than ",
               warmup, " requests?)");
  p.latency = LatencyStats::from_samples(latency);
  const double window = last - first_measured;
  p.throughput = window > 0 ? 1000.0 * static_cast<double>(latency.size()) / window : 0;
  p.utilisation = remote && window > 0 ? std::min(1.0, busy_ms / (window * s.executors)) : 0;
  if (!queue.empty()) {
    const auto q = LatencyStats::from_samples(queue);
    p.queue_mean_ms = q.mean_ms;
    p.queue_p99_ms = q.p99_ms;
  }
  return p;
}

FleetResult simulate_fleet(const FleetScenario& scenario, const std::vector<int>& devices, const Objective& objective) {
  TAILOR_CHECK(!devices.empty(), "no fleet sizes to simulate");
  FleetResult r{scenario, {}, std::nullopt};
  for (int n : devices) {
    FleetPoint p = simulate(scenario, n);
    if (objective.latency_ms) {
      const double at = objective.percentile == "p90" ? p.latency.p90_ms : p.latency.p50_ms;
      p.meets = at <= *objective.latency_ms;
      if (!p.meets && !r.breaks_at) r.breaks_at = n;
    }
    r.points.push_back(p);
  }
  return r;
}

std::string FleetResult::to_json() const {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : this->points)
    points.push_back({{"devices", p.devices},
                      {"latency_ms", {{"p50", p.latency.p50_ms}, {"p90", p.latency.p90_ms}, {"p99", p.latency.p99_ms},
                                      {"mean", p.latency.mean_ms}}},
                      {"throughput_per_s", p.throughput},
                      {"server_utilisation", p.utilisation},
                      {"queue_ms", {{"mean", p.queue_mean_ms}, {"p99", p.queue_p99_ms}}},
                      {"meets_objective", p.meets}});
  const auto& s = scenario;
  return nlohmann::json{{"placement", s.name},
                        {"edge_ms_p50", s.edge.median()},
                        {"cloud_ms_p50", s.cloud.median()},
                        {"up_bytes", s.up_bytes},
                        {"down_bytes", s.down_bytes},
                        {"link", s.link.name},
                        {"overhead_ms", s.overhead_ms},
                        {"exit_rate", s.exit_rate},
                        {"executors", s.executors},
                        {"arrivals", s.arrivals.str()},
                        {"points", points},
                        {"breaks_at", breaks_at ? nlohmann::json(*breaks_at) : nlohmann::json(nullptr)}}
      .dump();
}

std::string render_fleet_html(const std::vector<FleetResult>& results, const Objective& objective) {
  std::ostringstream h;
  if (results.empty()) return "";
  h << "<h2>Fleet simulation: " << html_escape(results[0].scenario.link.name)
    << "</h2>\n<p class=\"note\">Simulated: " << results[0].points.size()
    << " fleet sizes, " << html_escape(results[0].scenario.arrivals.str()) << ", " << results[0].scenario.executors
    << " server executor(s); service times from profiles, transfers from the link model.</p>\n<table><tr><th>placement"
       "</th><th>devices</th><th>p50 ms</th><th>p99 ms</th><th>req/s</th><th>server busy</th><th>queue p99 ms</th>"
       "</tr>\n";
  for (const auto& r : results)
    for (const auto& p : r.points)
      h << "<tr" << (p.meets ? "" : " class=\"miss\"") << "><td>" << html_escape(r.scenario.name) << "</td><td>"
        << p.devices << "</td><td>" << short_number(p.latency.p50_ms) << "</td><td>" << short_number(p.latency.p99_ms)
        << "</td><td>" << short_number(p.throughput) << "</td><td>" << static_cast<int>(std::lround(100 * p.utilisation))
        << "%</td><td>" << short_number(p.queue_p99_ms) << "</td></tr>\n";
  h << "</table>\n";
  detail::Plot plot;
  plot.title = results[0].scenario.link.name + ": latency vs edge devices";
  plot.x_label = "edge devices";
  plot.y_label = "ms, end to end";
  static const char* colors[] = {"#36c", "#c60", "#2a7", "#a3a", "#777"};
  for (size_t i = 0; i < results.size(); ++i) {
    std::vector<double> n, p50, p99;
    for (const auto& p : results[i].points) {
      n.push_back(p.devices);
      p50.push_back(p.latency.p50_ms);
      p99.push_back(p.latency.p99_ms);
    }
    const char* color = colors[i % 5];
    plot.lines.push_back({n, p50, color, results[i].scenario.name + " p50"});
    plot.lines.push_back({n, p99, color, results[i].scenario.name + " p99", true});
  }
  for (const auto& p : results[0].points) plot.x_ticks.push_back(p.devices);
  plot.log_x = results[0].points.front().devices > 0 &&
               results[0].points.back().devices >= 4 * results[0].points.front().devices;
  if (objective.latency_ms) plot.y_marks.push_back({*objective.latency_ms, "objective " + objective.percentile});
  detail::svg_plot(h, plot);
  return h.str();
}

}  // namespace tailor::place
