// tailor/place/simulate.hpp: a discrete-event simulation of a fleet of edge devices that send requests through
// their own links to one cloud server with K executors, so a placement can be sized before it is deployed: latency
// percentiles, throughput, server utilisation and queueing as the fleet grows, and where the objective breaks.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tailor/place/place.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor::place {

/// A service time: a quantile function through measured points, interpolated linearly (so a profile's min, p50,
/// p90, p99 and max reproduce its spread, tail included), drawn independently per request; or, from a measured
/// sequence, the sequence replayed against time: a request starting at time t takes the run that was under way at
/// t (plus an offset) in the measurement, wrapping around. Replay keeps what independent draws lose on a machine
/// whose speed drifts: a slow spell slows every request queued behind it at once.
struct ServiceTime {
  std::vector<double> quantiles;  ///< increasing, from 0 to 1
  std::vector<double> ms;         ///< non-decreasing
  static ServiceTime fixed(double ms);
  static ServiceTime from_stats(const LatencyStats& stats);
  /// Quantiles of the runs (min, p50, p90, p99, max) and the runs themselves for replay. Needs positive times.
  static ServiceTime from_sequence(std::vector<double> runs);
  double sample(std::mt19937_64& rng) const;
  /// The replayed run at time `t_ms` of a machine whose replay started `offset_ms` into the sequence (sample()
  /// when there is no sequence).
  double at(double t_ms, double offset_ms, std::mt19937_64& rng) const;
  bool replays() const { return !sequence_.empty(); }
  const std::vector<double>& sequence() const { return sequence_; }  ///< the measured runs in order (ms)
  double sequence_ms() const { return ends_.empty() ? 0 : ends_.back(); }  ///< their whole length in time
  ServiceTime independent() const;  ///< the same distribution, drawn independently (no sequence)
  double median() const;
  void scale(double factor);  ///< every time, quantiles and sequence alike

 private:
  std::vector<double> sequence_, ends_;  // runs, and the time each ends (cumulative sums)
};

/// How requests arrive at each device: closed loop (the next one `think_ms` after the previous answer), Poisson
/// (`rate` per second), or a trace (arrival times in ms, replayed by every device with a random offset).
/// Text: `closed`, `closed:THINK_MS`, `poisson:RATE`, `trace:FILE` (one time in ms per line).
struct Arrivals {
  enum class Kind { Closed, Poisson, Trace } kind = Kind::Closed;
  double think_ms = 0, rate = 0;
  std::vector<double> trace_ms;
  static Arrivals parse(const std::string& text);
  std::string str() const;
};

/// One placement's request path: edge compute, the uplink, the server's queue and compute, the downlink.
struct FleetScenario {
  std::string name;       ///< the placement, for reports ("split", "cloud", ...)
  ServiceTime edge;       ///< per request on an edge device (each device computes one request at a time)
  ServiceTime cloud;      ///< per request on one server executor; empty: the request never leaves the edge
  int64_t up_bytes = 0, down_bytes = 0;
  Link link;              ///< every device's own link (bandwidth is not shared between devices)
  double overhead_ms = 0; ///< per-request cost outside compute and the link (serialization, the RPC stack)
  double exit_rate = 0;   ///< share of requests an early exit answers on the edge
  int executors = 1;
  Arrivals arrivals;
  int64_t requests = 400;  ///< completed requests measured per device count (after a 10% warm-up)
  uint64_t seed = 0;
};

struct FleetPoint {
  int devices = 0;
  LatencyStats latency;                 ///< end to end, per request
  double throughput = 0;               ///< answered requests per second, whole fleet
  double utilisation = 0;              ///< busy share of the server's executors
  double queue_mean_ms = 0, queue_p99_ms = 0;  ///< waiting for an executor
  bool meets = true;                   ///< within the objective's latency at its percentile
};

struct FleetResult {
  FleetScenario scenario;
  std::vector<FleetPoint> points;
  std::optional<int> breaks_at;  ///< the fewest devices (of those simulated) at which the objective is missed
  std::string to_json() const;
};

/// What a plan gives the simulator: its link and objective, and one scenario per placement of the chosen variant
/// (the chosen placement first, marked "[chosen]", then the other candidates when `all`), with the predicted stage
/// times, bytes and exit rate. `edge_spread` / `cloud_spread`, measured on the chosen placement's parts, are that
/// placement's service times as they are; other placements take their shape scaled to their own predicted medians.
/// Unset: the predicted times, no spread. `plan_json` is plan.json's text or Plan::to_json().
struct FleetSetup {
  Link link;
  Objective objective;
  std::vector<FleetScenario> scenarios;
};
FleetSetup fleet_setup(const std::string& plan_json, const std::string& where, bool all = true,
                       const std::optional<ServiceTime>& edge_spread = std::nullopt,
                       const std::optional<ServiceTime>& cloud_spread = std::nullopt);

/// Simulates `devices` edge devices.
FleetPoint simulate(const FleetScenario& scenario, int devices);
/// Simulates each device count and marks where `objective` (its latency at its percentile) is first missed.
FleetResult simulate_fleet(const FleetScenario& scenario, const std::vector<int>& devices, const Objective& objective);

/// An HTML fragment: per scenario, latency (p50 and p99) against the number of devices, with the objective's line.
std::string render_fleet_html(const std::vector<FleetResult>& results, const Objective& objective);

}  // namespace tailor::place
