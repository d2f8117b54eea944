// tailor/place/place.hpp: edge/cloud placement. Given an edge device, a cloud device, a link between them and an
// objective, the planner chooses for each variant where it runs (the edge, the cloud, or split at a cut of the
// graph, a min-cut where the graph is a DAG) from per-node latencies, and a plan becomes two TorchScript parts.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tailor/ir/graph_module.hpp"
#include "tailor/profile/profiler.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/variant/card.hpp"

namespace tailor::place {

/// A machine a part of the model runs on. `slowdown` multiplies every time measured here, to model a device
/// slower than this host; a plan that uses it says its numbers are modelled, not measured.
struct Device {
  std::string name;
  std::string backend = "onednn-cpu";
  int threads = 1;
  std::string isa;    ///< the x86 ISA cap the device's profiles were taken with; empty: any
  std::string table;  ///< optional latency table (tailor latency build) predicting this device
  double slowdown = 1;

  /// YAML text (name, backend, threads, isa, table, slowdown); `where` names the source in errors.
  static Device parse(const std::string& yaml, const std::string& where);
  /// A YAML file, or inline `key=value,...` text such as `backend=onednn-cpu,threads=1,isa=avx2`.
  static Device load(const std::string& file_or_inline);
  std::string str() const;  ///< "edge: onednn-cpu 1 thread avx2 (x3 modelled)"
  bool modelled() const { return slowdown != 1; }
};

/// The network between the edge and the cloud. Transfers take bytes / bandwidth plus one round trip per request;
/// `jitter_ms` is the standard deviation of the round trip, which p90 objectives add 1.2816 times.
struct Link {
  std::string name;
  double uplink_mbps = 0, downlink_mbps = 0, rtt_ms = 0, jitter_ms = 0;
  std::string source;  ///< where the figures come from

  static Link parse(const std::string& yaml, const std::string& where);
  /// A YAML file, or inline `key=value,...` text such as `uplink_mbps=5.85,downlink_mbps=5.85,rtt_ms=50`.
  static Link load(const std::string& file_or_inline);
  double up_ms(int64_t bytes) const { return static_cast<double>(bytes) * 8e-3 / uplink_mbps; }
  double down_ms(int64_t bytes) const { return static_cast<double>(bytes) * 8e-3 / downlink_mbps; }
  std::string str() const;
};

/// How tensors that cross the link are encoded: as they are, as float16, or as uint8 with a per-tensor scale and
/// zero point (8 bytes of header).
enum class Codec { None, Fp16, Int8 };
const char* to_string(Codec codec);
Codec codec_from_string(const std::string& text);
/// Bytes a tensor of `elements` floats takes on the wire with `codec` (non-float tensors travel as they are).
int64_t wire_bytes(int64_t raw_bytes, const std::string& dtype, Codec codec);
/// A tensor as it crosses the link: float16 data, or uint8 data with its scale and zero point, or the tensor itself.
struct EncodedTensor {
  torch::Tensor data;
  Codec codec = Codec::None;
  double scale = 1;
  int64_t zero_point = 0;
};
/// Encodes a float tensor for the link (other dtypes, and Codec::None, pass as they are).
EncodedTensor encode(const torch::Tensor& x, Codec codec);
/// The float tensor the receiver reconstructs.
torch::Tensor decode(const EncodedTensor& encoded);
/// Encodes then decodes a tensor as the link would (identity for Codec::None): what the receiver gets.
torch::Tensor through_codec(const torch::Tensor& x, Codec codec);

/// What the plan optimizes and must meet.
struct Objective {
  std::string percentile = "p50";         ///< "p50" or "p90": which end-to-end latency is minimized
  std::optional<double> latency_ms;       ///< the latency the plan must meet
  std::optional<double> throughput;       ///< requests per second the pipeline must sustain
  std::optional<double> min_accuracy;     ///< accuracy floor in [0, 1] (cards without accuracy are then skipped)
  std::optional<double> joules_per_mac;   ///< edge energy model: compute ...
  std::optional<double> joules_per_byte;  ///< ... and radio, per byte sent or received
  Codec codec = Codec::None;              ///< encoding of the tensors crossing the link

  static Objective parse(const std::string& yaml, const std::string& where);
  /// A YAML file, or inline `key=value,...` text such as `percentile=p90,latency_ms=40,codec=int8`.
  static Objective load(const std::string& file_or_inline);
};

/// Per-node times of one model on one device, scaled so that their sum is the whole model's time there.
struct NodeLatency {
  std::map<std::string, double> node_ms;  ///< by graph node name (fused nodes are folded into their anchor)
  double total_ms = 0;
  std::string source;    ///< which profile or table, and any modelled slowdown
  bool modelled = false;
};
/// From a measured profile (its per-node times, scaled to its p50 or p90) and a device's slowdown.
NodeLatency node_latency(const LatencyProfile& profile, const std::string& percentile, double slowdown = 1);
/// The profile on a card that matches a device (backend, threads, and the ISA when the device names one), or
/// nullptr.
const LatencyProfile* find_profile(const VariantCard& card, const Device& device);

/// An early exit (added by the early-exit pass): a classifier head after `node` whose confident answers end the
/// request on the edge. `threshold` is the softmax confidence that exits; `rate` the share of validation inputs that
/// left here (after the earlier exits took theirs), `accuracy` their top-1.
struct Exit {
  std::string node, output;  ///< the backbone node it reads; the head's output value (a model output)
  double threshold = 1, rate = 0, accuracy = 0;
};
/// The exits recorded by the module's last early-exit pass, in order (empty when it has none).
std::vector<Exit> exits_of(const GraphModuleImpl& module);

/// Thresholds per exit, in order, on validation logits: each the lowest softmax confidence at which the model's
/// overall top-1 (inputs answered by the exits they take, the rest by the model's own head) stays at least
/// `target_accuracy`.
struct ExitCalibration {
  std::vector<double> thresholds, rates, accuracy;
  double final_accuracy = 0;   ///< the model's own head on every input
  double overall_accuracy = 0;  ///< with the exits taken
};
ExitCalibration calibrate_exits(const std::vector<torch::Tensor>& exit_logits, const torch::Tensor& final_logits,
                                const torch::Tensor& labels, double target_accuracy);

/// A model's compute nodes and the tensors between them, at one input shape: what cuts are made of.
struct CutGraph {
  struct Tensor {
    std::string name;           ///< the IR value's name (the split parts' input and output names)
    int producer = -1;          ///< index into `nodes`, -1 for a model input
    std::vector<int> consumers;  ///< indexes into `nodes`
    bool model_output = false;
    bool splittable = true;  ///< false for lists and tuples, which stay on their consumer's side
    bool is_tensor = true;   ///< non-tensor values (shapes, scalars) cross for free: the cloud part has them baked in
    std::vector<int64_t> shape;
    std::string dtype;
    int64_t bytes = 0;
  };
  std::vector<std::string> nodes;  ///< compute nodes in topological order (no params or constants)
  std::vector<int64_t> macs;       ///< per node
  std::vector<Tensor> tensors;
  std::vector<std::vector<int64_t>> input_shapes;
  /// Early exits: the nodes of each head (which must run on the edge for the exit to help), the edge nodes each
  /// exit needs (its ancestors and the earlier heads), its threshold and rate.
  struct ExitPath {
    Exit exit;
    std::vector<int> head;    ///< node indexes of the head
    std::vector<int> needed;  ///< every node computed before this exit can answer
  };
  std::vector<ExitPath> exits;

  static CutGraph of(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes);
};

enum class Site { Edge, Cloud, Split };
const char* to_string(Site site);

/// Predicted end-to-end time of one request, in parts. With early exits on the edge, total_ms is the expectation
/// over the validation exit rates, and the parts are those of a request that takes no exit.
struct Breakdown {
  double edge_ms = 0, up_ms = 0, cloud_ms = 0, down_ms = 0, rtt_ms = 0;
  double total_ms = 0;
  double no_exit_ms = 0;  ///< a request no exit takes (equals total_ms without exits)
  double exit_rate = 0;   ///< share of requests answered by an exit on the edge
  double edge_energy_j = 0;  ///< when the objective has an energy model
  double throughput = 0;     ///< requests per second when the stages run as a pipeline (1 / the slowest stage)
};

/// Where each node runs, and what crosses the link.
struct Placement {
  Site site = Site::Edge;
  std::string method;                   ///< "edge", "cloud", "chain cut", "min-cut"
  std::vector<bool> on_edge;            ///< per CutGraph node
  std::vector<std::string> up, down;    ///< tensors sent to the cloud and back
  int64_t up_bytes = 0, down_bytes = 0;  ///< on the wire, after the codec
  Breakdown predicted;
  std::string to_json() const;
};

/// Prices an assignment of nodes to sites (true: edge). Fails when a tensor would flow from the cloud back to the
/// edge except as a model output.
Placement evaluate(const CutGraph& graph, const std::vector<bool>& on_edge, const NodeLatency& edge,
                   const NodeLatency& cloud, const Link& link, const Objective& objective);
/// Every prefix of the topological order as the edge part (Neurosurgeon's single split of a chain, which for a DAG
/// is one particular order's cuts); the best by predicted total.
Placement best_chain_cut(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud, const Link& link,
                         const Objective& objective);
/// The exact best cut of the DAG (DADS): a minimum s-t cut over a flow network where cutting a node's edge
/// costs its time on the other site and cutting a tensor's edge costs its transfer, with infinite reverse edges
/// so data never returns to the edge. Solved by Dinic's max-flow: O(V^2 E) worst case, milliseconds on
/// DenseNet-121 (about 2,000 vertices).
Placement min_cut(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud, const Link& link,
                  const Objective& objective);

/// Predicted end-to-end latency of the whole-edge, whole-cloud and best placements as the link's bandwidth varies
/// (uplink and downlink scaled together, the round trip kept): the report's latency-vs-bandwidth plot.
struct BandwidthSweep {
  std::vector<double> uplink_mbps, edge_ms, cloud_ms, best_ms;
  std::vector<std::string> best_site;  ///< edge, cloud or split at each point
};
BandwidthSweep sweep_bandwidth(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud,
                               const Link& link, const Objective& objective);

/// The placements considered for one variant, best first.
struct VariantPlan {
  std::string variant, file;
  std::optional<double> accuracy;
  int64_t macs = 0;
  Placement best;
  std::vector<Placement> candidates;  ///< edge, cloud, best chain cut, min-cut (duplicates dropped), best first
  bool meets = true;
  std::vector<std::string> misses;  ///< which parts of the objective it misses
  std::vector<std::string> notes;   ///< modelled times, where the latencies came from
  CutGraph graph;
  BandwidthSweep sweep;
};

struct Plan {
  Device edge, cloud;
  Link link;
  Objective objective;
  VariantPlan chosen;
  std::vector<VariantPlan> runners_up;  ///< the other variants, best first
  std::string to_json() const;
};

/// Plans one variant whose module and per-node latencies are at hand.
VariantPlan plan_variant(GraphModuleImpl& module, const VariantCard& card, const NodeLatency& edge,
                         const NodeLatency& cloud, const Link& link, const Objective& objective);

/// Plans every variant of a manifest that has profiles for both devices (cards' files are read relative to
/// `manifest_dir`). Fails, nothing chosen, when no variant has the profiles (naming what to run) or none meets the
/// objective (naming the closest plan).
Plan plan(const Manifest& manifest, const std::string& manifest_dir, const Device& edge, const Device& cloud,
          const Link& link, const Objective& objective);

/// An HTML fragment for reports: per link, a table of every variant's best placement with its predicted
/// breakdown; per variant, an inline SVG plot of latency against uplink bandwidth with one line per placement.
std::string render_html(const std::vector<Plan>& plans);

/// A model split into the part that runs on the edge and the part that runs in the cloud. Either may be empty
/// (edge-only or cloud-only plans). Cut tensors keep their IR names as the edge part's outputs and the cloud
/// part's inputs, in `cut` order; model outputs computed on the edge are listed in `edge_outputs`.
struct SplitModel {
  std::optional<GraphModule> edge, cloud;
  std::vector<std::string> cut;           ///< tensors the edge part sends (its outputs after any model outputs)
  std::vector<std::string> edge_outputs;  ///< model outputs the edge part computes itself
  std::vector<std::string> cloud_outputs;
  std::vector<std::string> output_order;  ///< the model's outputs, in its order
};
/// Splits a module by the nodes that run on the edge. Non-tensor values that cross (shapes) are baked into the
/// cloud part as constants computed at `input_shapes`.
SplitModel split(const GraphModuleImpl& module, const CutGraph& graph, const std::vector<bool>& on_edge);
/// Runs the two parts as the runtime would (the cut tensors through `codec`) and returns the model's outputs.
c10::IValue run_split(SplitModel& parts, const std::vector<c10::IValue>& inputs, Codec codec = Codec::None);

/// Writes edge.pt, cloud.pt (those the plan has) and plan.json into `folder`, each atomically; everything is
/// built before the first file is written.
void export_plan(const Plan& plan, const GraphModuleImpl& module, const std::string& folder);

/// A plan folder read back: plan.json checked (its format and the keys a run needs), the devices and the parts'
/// files. The edge runtime and `tailor simulate --measure` read plans through it.
struct PlanFolder {
  std::string folder, path;  ///< path: FOLDER/plan.json
  std::string json;          ///< plan.json's text
  Device edge, cloud;        ///< read as Device::parse reads a device file
  std::string edge_part, cloud_part;  ///< the parts' files; empty where the plan has no such part
  std::vector<std::vector<int64_t>> input_shapes;  ///< the model's, which the edge part takes
  /// Tensor names: sent from the edge to the cloud (the cut), answered by the edge part, by the cloud part, and the
  /// model's outputs in order.
  std::vector<std::string> cut, edge_outputs, cloud_outputs, outputs;
  Codec codec = Codec::None;  ///< of the cut tensors on the link
  Link link;
  double predicted_ms = 0;  ///< the chosen placement's predicted end-to-end latency
  struct Exit {
    std::string output;  ///< an early exit's output, answered on the edge when its confidence reaches `threshold`
    double threshold = 0;
  };
  std::vector<Exit> exits;

  /// Fails naming the file and the key when plan.json is missing, not a tailor plan, or lacks what a run needs.
  static PlanFolder read(const std::string& folder);
  /// The device and the file (empty: none) of `part`, "edge" or "cloud"; another name fails.
  const Device& device_of(const std::string& part) const;
  const std::string& file_of(const std::string& part) const;
  /// Loads `part` ("edge" or "cloud") and compiles it for its device (backend, threads, ISA cap): the edge part at
  /// the model's input shapes, the cloud part at its own. Fails when the device's ISA cap cannot be applied in this
  /// process (oneDNN takes one cap per process, before its first kernel).
  std::unique_ptr<Executable> compile(const std::string& part) const;
};

}  // namespace tailor::place
