// The OIP client (with link emulation and retries) and the edge runtime that runs a plan's edge part and sends
// its cut to the cloud part.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"
#include <torch/torch.h>

#include "grpc_predict_v2.grpc.pb.h"
#include "tailor/capture/capture.hpp"
#include "tailor/core/text.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/runtime/isa.hpp"
#include "tailor/serve/serve.hpp"
#include "tailor_serve.grpc.pb.h"
#include "wire.hpp"

namespace tailor::serve {
namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Sleeps most of the way and spins the last stretch: the scheduler's wake-up is too coarse for sub-millisecond
// links, and a short spin costs little CPU.
void wait_for_ms(double ms) {
  if (ms <= 0) return;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
  const auto margin = std::chrono::microseconds(150);
  if (until - Clock::now() > margin) std::this_thread::sleep_until(until - margin);
  while (Clock::now() < until) std::this_thread::yield();
}

[[noreturn]] void raise(const grpc::Status& status) {
  throw CallError(wire::status_name(static_cast<int>(status.error_code())), status.error_message());
}

int64_t wire_size(const place::EncodedTensor& e) {
  return e.data.numel() * static_cast<int64_t>(e.data.element_size()) + (e.codec == place::Codec::Int8 ? 8 : 0);
}

}  // namespace

struct Client::Impl {
  std::string address;
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<inference::GRPCInferenceService::Stub> oip;
  std::unique_ptr<tailor_serve::TailorService::Stub> tailor;
  std::mt19937_64 rng;
  // Loopback's own transport time per byte (request and reply) in recent calls: what the link emulation absorbs.
  double loopback_ms_per_byte = 0;
  bool loopback_measured = false;

  std::unique_ptr<grpc::ClientContext> context() const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(static_cast<int64_t>(options.deadline_ms * 1000)));
    return c;
  }

  // Calls `rpc` until it succeeds, fails with something other than UNAVAILABLE, or runs out of retries.
  template <class Call>
  int call(const Call& rpc) {
    for (int attempt = 1;; ++attempt) {
      auto ctx = context();
      const grpc::Status status = rpc(*ctx);
      if (status.ok()) return attempt;
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE || attempt > options.retries) raise(status);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 25 << std::min(attempt, 5))));
    }
  }
};

Client::Client(const std::string& address, ClientOptions options) : impl_(std::make_unique<Impl>()) {
  TAILOR_CHECK(!address.empty(), "no server address (host:port)");
  if (options.link)
    TAILOR_CHECK(options.link->uplink_mbps > 0 && options.link->downlink_mbps > 0, "link '", options.link->name,
                 "' needs positive bandwidths to be emulated");
  if (options.keep_freed_memory) keep_freed_memory();
  impl_->address = address;
  impl_->options = options;
  impl_->rng.seed(options.seed);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, wire::kStreamWindowBytes);
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, wire::kMaxFrameBytes);
  impl_->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  impl_->oip = inference::GRPCInferenceService::NewStub(impl_->channel);
  impl_->tailor = tailor_serve::TailorService::NewStub(impl_->channel);
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;

bool Client::server_live() {
  inference::ServerLiveResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->oip->ServerLive(&c, {}, &reply); });
  return reply.live();
}

bool Client::server_ready() {
  inference::ServerReadyResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->oip->ServerReady(&c, {}, &reply); });
  return reply.ready();
}

bool Client::model_ready(const std::string& model) {
  inference::ModelReadyRequest request;
  request.set_name(model);
  inference::ModelReadyResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->oip->ModelReady(&c, request, &reply); });
  return reply.ready();
}

std::pair<std::string, std::string> Client::server_metadata() {
  inference::ServerMetadataResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->oip->ServerMetadata(&c, {}, &reply); });
  return {reply.name(), reply.version()};
}

ModelMetadata Client::model_metadata(const std::string& model) {
  inference::ModelMetadataRequest request;
  request.set_name(model);
  inference::ModelMetadataResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->oip->ModelMetadata(&c, request, &reply); });
  ModelMetadata m{reply.name(), reply.platform(), {reply.versions().begin(), reply.versions().end()}, {}, {}};
  for (const auto& t : reply.inputs()) m.inputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
  for (const auto& t : reply.outputs())
    m.outputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
  return m;
}

InferResult Client::infer(const std::string& model, const std::vector<std::pair<std::string, torch::Tensor>>& inputs,
                          place::Codec codec) {
  const auto t0 = Clock::now();
  inference::ModelInferRequest request;
  request.set_model_name(model);
  InferResult result;
  for (const auto& [name, x] : inputs) {
    const auto encoded = place::encode(x.cpu().contiguous(), codec);
    auto* in = request.add_inputs();
    in->set_name(name);
    in->set_datatype(wire::datatype_of(encoded.data.scalar_type()));
    for (int64_t d : x.sizes()) in->add_shape(d);
    wire::put_codec(encoded, *in->mutable_parameters());
    request.add_raw_input_contents(wire::raw_bytes(encoded.data));
    result.timing.up_bytes += wire_size(encoded);
  }
  const auto t1 = Clock::now();
  const auto& link = impl_->options.link;
  // Pacing: a real link's transmission overlaps the sender's and receiver's kernel copies, so the emulated call
  // takes the link's time (transmission + round trip), not the link's time plus loopback's own. The uplink wait is
  // shortened by the loopback time the request is expected to take (learned from earlier calls), so the server sees
  // it when the link would deliver it; after the reply, the call is held until the link's whole time has passed.
  // Where loopback is slower than the link, its excess shows in network_ms.
  double link_ms = 0, uplink_wait = 0;
  Clock::time_point sent;
  inference::ModelInferResponse reply;
  result.timing.attempts = impl_->call([&](grpc::ClientContext& c) {
    if (link) {
      std::normal_distribution<double> jitter(0, 1);
      const double rtt = std::max(0.0, link->rtt_ms + link->jitter_ms * jitter(impl_->rng));
      const double up = link->up_ms(result.timing.up_bytes);
      link_ms = up + rtt;  // the downlink is added when the reply's size is known
      uplink_wait =
          std::max(0.0, up + rtt / 2 - impl_->loopback_ms_per_byte * static_cast<double>(result.timing.up_bytes));
      wait_for_ms(uplink_wait);
    }
    sent = Clock::now();
    reply.Clear();
    return impl_->oip->ModelInfer(&c, request, &reply);
  });
  TAILOR_CHECK(reply.raw_output_contents_size() == reply.outputs_size(), "server '", impl_->address, "', model '",
               model, "': the reply has ", reply.raw_output_contents_size(), " raw contents for ",
               reply.outputs_size(), " outputs");
  for (int k = 0; k < reply.outputs_size(); ++k) {
    const auto& p = reply.outputs(k).parameters();
    const auto codec_param = p.find(wire::kCodec);
    const bool int8 = codec_param != p.end() && codec_param->second.string_param() == "int8";
    result.timing.down_bytes += static_cast<int64_t>(reply.raw_output_contents(k).size()) + (int8 ? 8 : 0);
  }
  auto micros = [&](const char* key) {
    const auto p = reply.parameters().find(key);
    return p != reply.parameters().end() ? static_cast<double>(p->second.int64_param()) / 1000 : 0.0;
  };
  auto& timing = result.timing;
  timing.queue_ms = micros(wire::kQueueMicros);
  timing.compute_ms = micros(wire::kComputeMicros);
  if (link) {
    const double loopback_ms = std::max(0.0, ms_between(sent, Clock::now()) - timing.queue_ms - timing.compute_ms);
    const int64_t bytes = timing.up_bytes + timing.down_bytes;
    if (bytes > 0) {
      const double per_byte = loopback_ms / static_cast<double>(bytes);
      impl_->loopback_ms_per_byte =
          impl_->loopback_measured ? 0.8 * impl_->loopback_ms_per_byte + 0.2 * per_byte : per_byte;
      impl_->loopback_measured = true;
    }
    link_ms += link->down_ms(timing.down_bytes);
    const double hold = std::max(0.0, link_ms - uplink_wait - loopback_ms);
    timing.emulated_ms = uplink_wait + hold;
    timing.link_ms = link_ms;
    wait_for_ms(hold);
  }
  const auto t2 = Clock::now();
  for (int k = 0; k < reply.outputs_size(); ++k) {
    const auto& out = reply.outputs(k);
    const std::string what = "output '" + out.name() + "' of model '" + model + "'";
    auto data = wire::from_raw(reply.raw_output_contents(k), out.datatype(), {out.shape().begin(), out.shape().end()},
                               what);
    result.names.push_back(out.name());
    result.outputs.push_back(place::decode(wire::get_codec(out.parameters(), std::move(data), what)));
  }
  const auto t3 = Clock::now();
  timing.encode_ms = ms_between(t0, t1);
  timing.network_ms = ms_between(t1, t2) - timing.queue_ms - timing.compute_ms;
  timing.decode_ms = ms_between(t2, t3);
  timing.total_ms = ms_between(t0, t3);
  return result;
}

std::string Client::statistics_json(const std::string& model) {
  tailor_serve::ModelStatisticsRequest request;
  request.set_name(model);
  tailor_serve::ModelStatisticsResponse reply;
  impl_->call([&](grpc::ClientContext& c) { return impl_->tailor->ModelStatistics(&c, request, &reply); });
  return reply.json();
}

// --- the edge runtime

struct EdgeRuntime::Impl {
  RunPlanOptions options;
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<std::string> cut, edge_outputs, cloud_outputs, outputs;
  place::Codec codec = place::Codec::None;
  place::Link link;
  double predicted_ms = 0;
  std::vector<place::PlanFolder::Exit> exits;
  std::unique_ptr<Executable> edge;
  std::optional<Client> client;
  bool has_cloud = false;
  // The server's names for the cloud part's inputs and outputs: tailor's own server uses the plan's tensor names;
  // another OIP server (Triton: forward argument names, OUTPUT__0...) is matched by position.
  std::vector<std::string> send_names, reply_names;

  void learn_names() {
    if (!send_names.empty()) return;
    const auto md = client->model_metadata(options.model);
    auto names_of = [](const std::vector<TensorMetadata>& t) {
      std::vector<std::string> out;
      for (const auto& m : t) out.push_back(m.name);
      return out;
    };
    const auto inputs = names_of(md.inputs), outputs = names_of(md.outputs);
    TAILOR_CHECK(inputs.size() == cut.size(), "model '", options.model, "' on ", options.server, " takes ",
                 inputs.size(), " inputs (", join(inputs), "), but the plan's cloud part takes ", cut.size(), " (",
                 join(cut), "); is it the plan's cloud part?");
    send_names = std::is_permutation(inputs.begin(), inputs.end(), cut.begin()) ? cut : inputs;
    reply_names = outputs;
  }
};

EdgeRuntime::EdgeRuntime(const std::string& folder, RunPlanOptions options) : impl_(std::make_unique<Impl>()) {
  const place::PlanFolder plan = place::PlanFolder::read(folder);
  const std::string& path = plan.path;
  auto& r = *impl_;
  r.options = options;
  r.input_shapes = plan.input_shapes;
  r.cut = plan.cut;
  r.edge_outputs = plan.edge_outputs;
  r.outputs = plan.outputs;
  r.cloud_outputs = plan.cloud_outputs;
  r.codec = plan.codec;
  r.has_cloud = !plan.cloud_part.empty();
  r.link = options.link ? *options.link : plan.link;
  r.predicted_ms = plan.predicted_ms;
  if (options.exits) r.exits = plan.exits;
  if (!plan.edge_part.empty()) r.edge = plan.compile("edge");
  if (r.has_cloud) {
    TAILOR_CHECK(!options.server.empty(), "plan '", path, "' runs a part in the cloud; give the server (--server HOST:PORT)");
    ClientOptions co;
    if (options.emulate) co.link = r.link;
    co.deadline_ms = options.deadline_ms;
    co.retries = options.retries;
    co.seed = options.seed;
    r.client.emplace(options.server, co);
  }
}

EdgeRuntime::~EdgeRuntime() = default;
EdgeRuntime::EdgeRuntime(EdgeRuntime&&) noexcept = default;
const std::vector<std::vector<int64_t>>& EdgeRuntime::input_shapes() const { return impl_->input_shapes; }
double EdgeRuntime::predicted_ms() const { return impl_->predicted_ms; }
const place::Link& EdgeRuntime::link() const { return impl_->link; }

std::vector<torch::Tensor> EdgeRuntime::run(const std::vector<torch::Tensor>& inputs, RequestTiming* timing) {
  auto& r = *impl_;
  TAILOR_CHECK(inputs.size() == r.input_shapes.size(), "the plan takes ", r.input_shapes.size(), " inputs, got ",
               inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    TAILOR_CHECK(inputs[i].sizes().vec() == r.input_shapes[i], "input ", i, " has shape ",
                 shape_to_string(inputs[i].sizes().vec()), "; the plan was made for ",
                 shape_to_string(r.input_shapes[i]));
  RequestTiming local;
  RequestTiming& t = timing ? *timing : local;
  t = {};
  const auto t0 = Clock::now();
  std::map<std::string, torch::Tensor> named;
  std::vector<std::pair<std::string, torch::Tensor>> send;
  if (r.edge) {
    torch::NoGradGuard no_grad;
    std::vector<c10::IValue> in(inputs.begin(), inputs.end());
    const c10::IValue out = r.edge->run(in);
    std::vector<torch::Tensor> outs;
    if (out.isTensor()) outs.push_back(out.toTensor());
    else
      for (const auto& e : out.toTupleRef().elements()) outs.push_back(e.toTensor());
    const size_t expected = r.edge_outputs.size() + (r.has_cloud ? r.cut.size() : 0);
    TAILOR_INTERNAL_ASSERT(outs.size() == expected, "the edge part returned ", outs.size(), " tensors, expected ",
                           expected);
    for (size_t i = 0; i < r.edge_outputs.size(); ++i) named[r.edge_outputs[i]] = outs[i];
    if (r.has_cloud)
      for (size_t i = 0; i < r.cut.size(); ++i) send.emplace_back(r.cut[i], outs[r.edge_outputs.size() + i]);
  } else {
    TAILOR_CHECK(r.cut.size() == inputs.size(), "the plan's cloud part takes ", r.cut.size(), " inputs, the model ",
                 inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) send.emplace_back(r.cut[i], inputs[i]);
  }
  if (r.has_cloud) {
    r.learn_names();
    for (size_t i = 0; i < send.size(); ++i) send[i].first = r.send_names[i];
  }
  t.edge_ms = ms_between(t0, Clock::now());
  // An exit answers when every row of the batch is at least as confident as its threshold.
  for (const auto& e : r.exits) {
    const auto it = named.find(e.output);
    if (it == named.end()) continue;
    const double confidence = torch::softmax(it->second, 1).amax(1).min().item<double>();
    if (confidence >= e.threshold) {
      t.exit = e.output;
      t.total_ms = ms_between(t0, Clock::now());
      return {it->second};
    }
  }
  if (r.has_cloud) {
    auto reply = r.client->infer(r.options.model, send, r.codec);
    // Outputs by name where the server uses the plan's names, else by position in the cloud part's order.
    for (size_t i = 0; i < reply.names.size(); ++i) {
      const bool ours = std::find(r.cloud_outputs.begin(), r.cloud_outputs.end(), reply.names[i]) != r.cloud_outputs.end();
      const auto pos = std::find(r.reply_names.begin(), r.reply_names.end(), reply.names[i]) - r.reply_names.begin();
      if (ours) named[reply.names[i]] = reply.outputs[i];
      else if (pos < static_cast<long>(r.cloud_outputs.size())) named[r.cloud_outputs[pos]] = reply.outputs[i];
    }
    t.call = reply.timing;
  }
  std::vector<torch::Tensor> result;
  for (const auto& name : r.outputs) {
    const auto it = named.find(name);
    TAILOR_CHECK(it != named.end(), "the cloud part's server did not return output '", name, "' (is '",
                 r.options.model, "' the plan's cloud part?)");
    result.push_back(it->second);
  }
  t.total_ms = ms_between(t0, Clock::now());
  return result;
}

}  // namespace tailor::serve
