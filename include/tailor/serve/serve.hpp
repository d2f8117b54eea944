// tailor/serve/serve.hpp: runs models and plans for real. A Server serves TorchScript models (whole models or the
// cloud parts of plans), compiled on a tailor backend, over the Open Inference Protocol's gRPC API; a Client calls
// any OIP server, optionally through an emulated link; an EdgeRuntime runs a plan's edge part and sends the cut.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "tailor/core/error.hpp"
#include "tailor/place/place.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor::serve {

/// One model a server hosts. Text form: `NAME=FILE[,backend=B][,threads=N][,input=1x3x224x224[;...]]`.
struct ModelSpec {
  std::string name, file;
  std::string backend = "onednn-cpu";
  int threads = 1;
  /// The shapes it is compiled for; empty: those recorded in the archive's tailor graph. Requests may change the
  /// first (batch) dimension, which compiles another executable (up to ServerOptions::max_shapes per model).
  std::vector<std::vector<int64_t>> input_shapes;

  static ModelSpec parse(const std::string& text);
};

struct ServerOptions {
  /// host:port. Loopback unless the caller binds another address on purpose; port 0 picks a free one.
  std::string address = "127.0.0.1:8001";
  int executors = 2;          ///< requests computed at once, each on its own thread with its own executables
  int queue_limit = 64;       ///< requests waiting for an executor; more are refused with RESOURCE_EXHAUSTED
  int64_t max_request_bytes = 64ll << 20;  ///< larger requests are refused with RESOURCE_EXHAUSTED
  int max_shapes = 4;         ///< executables (input shapes) compiled per model
  std::string isa;            ///< caps the x86 ISA of CPU kernels before compiling (see runtime/isa.hpp)
  bool keep_freed_memory = true;  ///< calls keep_freed_memory() at start()
};

/// Makes glibc's malloc keep freed memory for reuse (blocks under 32 MiB from the heap, the heap trimmed only past
/// 256 MiB free), process-wide, once. By default every request-sized block (a 600 KB tensor) is mapped from and
/// returned to the kernel on each request, and faulting its pages in again cost about 0.4 ms per 600 KB request on
/// this project's VM, as much as gRPC's whole transport (docs/serving.md). Does nothing where the C library is not
/// glibc.
void keep_freed_memory();

/// Statistics of one model since the server started (times in ms).
struct ModelStatistics {
  std::string name;
  int64_t succeeded = 0, failed = 0, refused = 0;  ///< refused: the queue was full
  LatencyStats queue, compute, total;               ///< total: from arrival in the server to the reply
  std::string to_json() const;
};

/// An OIP gRPC server. Construction loads and compiles every model (errors name the file or model); start()
/// binds and serves; shutdown() stops taking requests, lets those in flight finish and joins the executors.
class Server {
 public:
  Server(const std::vector<ModelSpec>& models, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  void start();
  int port() const;  ///< the port bound (resolves port 0)
  void shutdown(double grace_seconds = 5);
  std::vector<ModelStatistics> statistics() const;
  std::string statistics_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Writes models as a model repository that `tailor serve --repository` and Triton's PyTorch backend both load:
/// FOLDER/NAME/1/model.pt and FOLDER/NAME/config.pbtxt (platform pytorch_libtorch; inputs named after the
/// TorchScript forward arguments, outputs OUTPUT__0..N as Triton requires; tailor's backend, threads and shapes as
/// parameters Triton ignores; `instances` CPU instances). Each file is written atomically.
void write_model_repository(const std::string& folder, const std::vector<ModelSpec>& models, int instances = 1);
/// The models of a repository: every FOLDER/NAME/1/model.pt, with the backend, threads and shapes tailor wrote into
/// its config.pbtxt (defaults where there is none).
std::vector<ModelSpec> read_model_repository(const std::string& folder);

/// A failed call: the gRPC status code's name ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", ...) and the
/// server's message.
class CallError : public Error {
 public:
  CallError(std::string code, const std::string& message)
      : Error(code + ": " + message, __FILE__, __LINE__), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

struct ClientOptions {
  /// Emulates this link on loopback: a call's transport takes the link's time (request bytes / uplink + reply
  /// bytes / downlink + the round trip with the link's jitter), paced so that the request reaches the server when
  /// the link would deliver it. Loopback's own transfer time is absorbed, as a real link's transmission overlaps the
  /// kernel's copies; where loopback is slower than the link, the excess shows in network_ms.
  std::optional<place::Link> link;
  double deadline_ms = 30000;  ///< per attempt
  int retries = 0;             ///< further attempts after UNAVAILABLE (a server restarting), with backoff
  uint64_t seed = 0;           ///< of the emulated jitter
  bool keep_freed_memory = true;  ///< calls keep_freed_memory() on construction
};

struct TensorMetadata {
  std::string name, datatype;
  std::vector<int64_t> shape;
};
struct ModelMetadata {
  std::string name, platform;
  std::vector<std::string> versions;
  std::vector<TensorMetadata> inputs, outputs;
};

/// Where the time of one call went (ms). network_ms is the round trip less the server's time: the emulated link,
/// gRPC's transport and (de)serialization inside gRPC.
struct CallTiming {
  double encode_ms = 0, network_ms = 0, queue_ms = 0, compute_ms = 0, decode_ms = 0, total_ms = 0;
  double emulated_ms = 0;  ///< the part of network_ms the link emulation waited (the rest is loopback's own)
  /// The emulated link's time for this call (transmission both ways + the round trip with jitter); 0 without a
  /// link. network_ms - link_ms is what the RPC stack cost beyond the link.
  double link_ms = 0;
  int64_t up_bytes = 0, down_bytes = 0;  ///< tensor bytes sent and received
  int attempts = 1;
};

struct InferResult {
  std::vector<std::string> names;
  std::vector<torch::Tensor> outputs;
  CallTiming timing;
};

/// An OIP gRPC client. Failed calls throw CallError.
class Client {
 public:
  explicit Client(const std::string& address, ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  bool server_live();
  bool server_ready();
  bool model_ready(const std::string& model);
  std::pair<std::string, std::string> server_metadata();  ///< name, version
  ModelMetadata model_metadata(const std::string& model);
  /// Sends named tensors (float tensors through `codec`: fp16 as OIP FP16, int8 as UINT8 with the scale and zero
  /// point as tensor parameters, which tailor's server decodes; Codec::None is plain OIP any server accepts).
  InferResult infer(const std::string& model, const std::vector<std::pair<std::string, torch::Tensor>>& inputs,
                    place::Codec codec = place::Codec::None);
  std::string statistics_json(const std::string& model = "");  ///< tailor servers only

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Measured time of one request through a plan (ms).
struct RequestTiming {
  double edge_ms = 0;  ///< the edge part on the edge backend
  CallTiming call;     ///< the call to the cloud part (zero when the edge answered)
  double total_ms = 0;
  std::string exit;    ///< the early exit that answered on the edge, if one did
};

struct RunPlanOptions {
  std::string server;          ///< host:port of the server holding the cloud part
  std::string model = "cloud";  ///< its name there
  /// The link to emulate; unset: the plan's own link. `emulate = false` sends at loopback speed.
  std::optional<place::Link> link;
  bool emulate = true;
  bool exits = true;  ///< answer on the edge when an early exit is confident
  double deadline_ms = 30000;
  int retries = 3;
  uint64_t seed = 0;
};

/// The edge side of a plan folder (tailor place -o): compiles edge.pt on the plan's edge device, and per request
/// runs it, stops at the first confident early exit, or sends the cut tensors (through the plan's codec) to the
/// cloud part and returns the model's outputs in the model's order.
class EdgeRuntime {
 public:
  EdgeRuntime(const std::string& plan_folder, RunPlanOptions options);
  ~EdgeRuntime();
  EdgeRuntime(EdgeRuntime&&) noexcept;
  std::vector<torch::Tensor> run(const std::vector<torch::Tensor>& inputs, RequestTiming* timing = nullptr);
  const std::vector<std::vector<int64_t>>& input_shapes() const;
  double predicted_ms() const;  ///< the plan's predicted end-to-end time for its link
  const place::Link& link() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tailor::serve
