// The Open Inference Protocol server: gRPC handlers validate and decode requests, a bounded queue hands them to
// executor threads that each own compiled executables of every model, and per-model statistics are kept.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "grpc_predict_v2.grpc.pb.h"
#include "tailor/capture/capture.hpp"
#include "tailor/export/export.hpp"
#include "tailor/version.hpp"
#include "tailor/core/text.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/runtime/isa.hpp"
#include "tailor/serve/serve.hpp"
#include "tailor_serve.grpc.pb.h"
#include "wire.hpp"

namespace tailor::serve {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0, Clock::time_point t1 = Clock::now()) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

std::vector<torch::Tensor> flatten(const c10::IValue& v) {
  std::vector<torch::Tensor> out;
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      auto inner = flatten(e);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else if (v.isTensorList()) {
    for (const auto& t : v.toTensorVector()) out.push_back(t);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) {
      auto inner = flatten(e);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else {
    TAILOR_FAIL("the model returned a ", v.tagKind(), ", which has no tensor to send");
  }
  return out;
}

// A window of the latest samples, so that a long-running server's statistics stay bounded in memory.
class Samples {
 public:
  void add(double ms) {
    if (values_.size() < kWindow) values_.push_back(ms);
    else values_[next_++ % kWindow] = ms;
  }
  LatencyStats stats() const { return values_.empty() ? LatencyStats{} : LatencyStats::from_samples(values_); }

 private:
  static constexpr size_t kWindow = 20000;
  std::vector<double> values_;
  size_t next_ = 0;
};

struct Model {
  ModelSpec spec;
  GraphModule module{nullptr};
  wire::TensorSpecs inputs, outputs;
  std::set<std::vector<std::vector<int64_t>>> shapes;  // compiled (or being compiled) input shapes
  std::mutex mutex;                                     // guards shapes and the statistics
  int64_t succeeded = 0, failed = 0, refused = 0;
  Samples queue, compute, total;
};

struct Job {
  Model* model = nullptr;
  std::vector<c10::IValue> inputs;
  std::vector<std::vector<int64_t>> shapes;
  Clock::time_point arrived;
  std::atomic<bool> abandoned{false};  // the client went away; skip it
  std::promise<void> done;
  std::vector<torch::Tensor> outputs;
  std::string error;
  double queue_ms = 0, compute_ms = 0;
};

GraphModule load_module(const ModelSpec& spec) {
  try {
    return tailor::load(spec.file);
  } catch (const Error& e) {
    TAILOR_FAIL("model '", spec.name, "': ", e.message());
  }
}

// Loads a model and names its inputs and outputs with their datatypes and shapes (from the spec, else the file).
std::unique_ptr<Model> load_model(const ModelSpec& spec) {
  TAILOR_CHECK(!spec.name.empty(), "a served model needs a name");
  auto m = std::make_unique<Model>();
  m->spec = spec;
  m->module = load_module(spec);
  const auto& g = m->module->graph();
  std::vector<std::vector<int64_t>> shapes = spec.input_shapes;
  if (shapes.empty())
    for (int v : g.inputs()) shapes.push_back(g.value(v).shape);
  TAILOR_CHECK(shapes.size() == g.inputs().size(), "model '", spec.name, "' (", spec.file, ") takes ",
               g.inputs().size(), " inputs, but ", shapes.size(), " shapes were given");
  for (size_t i = 0; i < shapes.size(); ++i)
    TAILOR_CHECK(!shapes[i].empty(), "model '", spec.name, "' (", spec.file, "): the shape of input '",
                 g.value(g.inputs()[i]).name, "' is not recorded in the file; give it with input=SHAPE");
  m->module->infer_shapes(shapes);
  for (int v : g.inputs()) {
    m->inputs.names.push_back(g.value(v).name);
    m->inputs.datatypes.push_back(wire::datatype_of_dtype_name(g.value(v).dtype));
  }
  m->inputs.shapes = shapes;
  for (int v : g.outputs()) {
    m->outputs.names.push_back(g.value(v).name);
    m->outputs.datatypes.push_back(wire::datatype_of_dtype_name(g.value(v).dtype));
    m->outputs.shapes.push_back(g.value(v).shape);
  }
  m->shapes.insert(shapes);
  return m;
}

}  // namespace

ModelSpec ModelSpec::parse(const std::string& text) {
  const auto eq = text.find('=');
  TAILOR_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), "model '", text,
               "': expected NAME=FILE[,backend=B][,threads=N][,input=SHAPE[;SHAPE]]");
  ModelSpec spec;
  spec.name = text.substr(0, eq);
  // The file is what stands before the first comma (split() drops empty items, so "m=,threads=2" would otherwise
  // take "threads=2" for the file).
  const std::string rest = text.substr(eq + 1);
  const auto comma = rest.find(',');
  const auto file = split(rest.substr(0, comma), ',');
  TAILOR_CHECK(!file.empty(), "model '", spec.name, "': no file after '=' (NAME=FILE)");
  spec.file = file[0];
  const auto fields = comma == std::string::npos ? std::vector<std::string>{} : split(rest.substr(comma + 1), ',');
  for (const auto& field : fields) {
    const auto kv = field.find('=');
    TAILOR_CHECK(kv != std::string::npos, "model '", spec.name, "': '", field, "' is not key=value");
    const std::string key = field.substr(0, kv), value = field.substr(kv + 1);
    if (key == "backend") {
      spec.backend = value;
    } else if (key == "threads") {
      try {
        size_t used = 0;
        spec.threads = std::stoi(value, &used);
        if (used != value.size()) spec.threads = 0;
      } catch (const std::exception&) {
        spec.threads = 0;
      }
      TAILOR_CHECK(spec.threads > 0 && spec.threads <= 4096, "model '", spec.name,
                   "': threads must be an integer from 1 to 4096, not '", value, "'");
    } else if (key == "input") {
      for (const auto& shape : split(value, ';')) spec.input_shapes.push_back(parse_shape(shape));
    } else {
      TAILOR_FAIL("model '", spec.name, "': unknown key '", key, "' (valid: backend, threads, input)");
    }
  }
  return spec;
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  // Setting either value also stops glibc's own adjustment of them, which otherwise lets the threshold float and
  // trims the heap back to the kernel after every large free.
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest accepted value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
  });
#endif
}

std::string ModelStatistics::to_json() const {
  auto stats = [](const LatencyStats& s) {
    return nlohmann::json{{"p50", s.p50_ms}, {"p90", s.p90_ms}, {"p99", s.p99_ms}, {"mean", s.mean_ms},
                          {"max", s.max_ms}};
  };
  return nlohmann::json{{"name", name},
                        {"succeeded", succeeded},
                        {"failed", failed},
                        {"refused", refused},
                        {"queue_ms", stats(queue)},
                        {"compute_ms", stats(compute)},
                        {"total_ms", stats(total)}}
      .dump();
}

struct Server::Impl final : inference::GRPCInferenceService::Service, tailor_serve::TailorService::Service {
  ServerOptions options;
  std::map<std::string, std::unique_ptr<Model>> models;
  std::unique_ptr<grpc::Server> server;
  int bound_port = 0;
  std::atomic<bool> ready{false};

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<std::shared_ptr<Job>> queue;
  bool stopping = false;
  std::vector<std::thread> executors;
  // Per executor, per model, per input shapes: its own executables (they keep scratch memory, so none is shared).
  using Executables = std::map<std::pair<Model*, std::vector<std::vector<int64_t>>>, std::unique_ptr<Executable>>;
  std::vector<Executables> executables;

  std::string served_names() const {
    std::vector<std::string> names;
    for (const auto& [name, m] : models) names.push_back(name);
    return join(names);
  }

  Model* find(const std::string& name, const std::string& version, grpc::Status& status) {
    const auto it = models.find(name);
    if (it == models.end()) {
      status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "unknown model '" + name + "' (served: " + served_names() + ")");
      return nullptr;
    }
    if (!version.empty() && version != "1") {
      status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "model '" + name + "' has no version '" + version + "' (versions: 1)");
      return nullptr;
    }
    return it->second.get();
  }

  std::unique_ptr<Executable> compile_for(const Model& m, const std::vector<std::vector<int64_t>>& shapes) const {
    CompileOptions co;
    co.input_shapes = shapes;
    co.threads = m.spec.threads;
    return tailor::compile(m.spec.backend, *m.module, co);
  }

  void load(const ModelSpec& spec) {
    TAILOR_CHECK(!models.count(spec.name), "model name '", spec.name, "' is given twice");
    models[spec.name] = load_model(spec);
  }

  void warm_up(Executables& mine) {
    for (auto& [name, m] : models) {
      try {
        set_threads(m->spec.threads);
        auto exe = compile_for(*m, m->inputs.shapes);
        std::vector<c10::IValue> zeros;
        for (size_t i = 0; i < m->inputs.shapes.size(); ++i)
          zeros.emplace_back(torch::zeros(m->inputs.shapes[i], wire::scalar_type_of(m->inputs.datatypes[i])));
        torch::NoGradGuard no_grad;
        for (int k = 0; k < 3; ++k) exe->run(zeros);
        mine[{m.get(), m->inputs.shapes}] = std::move(exe);
      } catch (const Error& e) {
        TAILOR_FAIL("model '", name, "' (", m->spec.file, ") on ", m->spec.backend, ": ", e.message());
      }
    }
  }

  void executor_loop(size_t index) {
    Executables& mine = executables[index];
    int threads = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(queue_mutex);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping, nothing left
        job = std::move(queue.front());
        queue.pop_front();
      }
      const auto start = Clock::now();
      job->queue_ms = ms_since(job->arrived, start);
      if (!job->abandoned) {
        try {
          if (threads != job->model->spec.threads) set_threads(threads = job->model->spec.threads);
          auto& exe = mine[{job->model, job->shapes}];
          if (!exe) exe = compile_for(*job->model, job->shapes);
          torch::NoGradGuard no_grad;
          job->outputs = flatten(exe->run(job->inputs));
          for (auto& t : job->outputs) t = t.cpu().contiguous();
        } catch (const Error& e) {
          job->error = e.message();
        } catch (const c10::Error& e) {
          job->error = e.what_without_backtrace();
        } catch (const std::exception& e) {
          job->error = e.what();
        }
      }
      job->compute_ms = ms_since(start);
      job->done.set_value();
    }
  }

  // Decodes and checks a request against the model; fails with INVALID_ARGUMENT naming the input.
  grpc::Status decode(Model& m, const inference::ModelInferRequest& request, Job& job) {
    auto invalid = [&](const std::string& message) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "model '" + m.spec.name + "': " + message);
    };
    if (auto error = wire::decode_inputs(m.inputs, request, options.max_request_bytes, job.inputs, job.shapes);
        !error.empty())
      return invalid(error);
    {
      std::lock_guard<std::mutex> lock(m.mutex);
      if (!m.shapes.count(job.shapes)) {
        if (static_cast<int>(m.shapes.size()) >= options.max_shapes)
          return invalid("batch size " + std::to_string(job.shapes[0][0]) + " would compile a " +
                         std::to_string(m.shapes.size() + 1) + "th executable; the server compiles at most " +
                         std::to_string(options.max_shapes) + " per model");
        m.shapes.insert(job.shapes);
      }
    }
    for (const auto& o : request.outputs())
      if (std::find(m.outputs.names.begin(), m.outputs.names.end(), o.name()) == m.outputs.names.end())
        return invalid("no output named '" + o.name() + "' (outputs: " + join(m.outputs.names) + ")");
    return grpc::Status::OK;
  }

  void count(Model& m, const Job* job, bool ok, bool refused = false) {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (refused) ++m.refused;
    else if (ok) ++m.succeeded;
    else ++m.failed;
    if (job && ok) {
      m.queue.add(job->queue_ms);
      m.compute.add(job->compute_ms);
      m.total.add(ms_since(job->arrived));
    }
  }

  // --- the OIP service
  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* reply) override {
    reply->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* reply) override {
    reply->set_ready(ready.load());
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* reply) override {
    grpc::Status status;
    Model* m = find(request->name(), request->version(), status);
    if (!m) return status;
    reply->set_ready(ready.load());
    return grpc::Status::OK;
  }
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* reply) override {
    reply->set_name("tailor");
    reply->set_version(std::string(version()));
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* reply) override {
    grpc::Status status;
    Model* m = find(request->name(), request->version(), status);
    if (!m) return status;
    reply->set_name(m->spec.name);
    reply->add_versions("1");
    reply->set_platform("tailor_" + m->spec.backend);
    auto describe = [](const wire::TensorSpecs& t, const auto& add) {
      for (size_t i = 0; i < t.names.size(); ++i) {
        auto* meta = add();
        meta->set_name(t.names[i]);
        meta->set_datatype(t.datatypes[i]);
        for (size_t d = 0; d < t.shapes[i].size(); ++d) meta->add_shape(d == 0 ? -1 : t.shapes[i][d]);
      }
    };
    describe(m->inputs, [&] { return reply->add_inputs(); });
    describe(m->outputs, [&] { return reply->add_outputs(); });
    return grpc::Status::OK;
  }

  grpc::Status ModelInfer(grpc::ServerContext* context, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* reply) override {
    const auto arrived = Clock::now();
    grpc::Status status;
    Model* m = find(request->model_name(), request->model_version(), status);
    if (!m) return status;
    auto job = std::make_shared<Job>();
    job->model = m;
    job->arrived = arrived;
    status = decode(*m, *request, *job);
    if (!status.ok()) {
      count(*m, nullptr, false);
      return status;
    }
    auto done = job->done.get_future();
    {
      std::lock_guard<std::mutex> lock(queue_mutex);
      if (stopping) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
      if (static_cast<int>(queue.size()) >= options.queue_limit) {
        count(*m, nullptr, false, true);
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            "the request queue is full (" + std::to_string(options.queue_limit) +
                                " waiting); retry later");
      }
      queue.push_back(job);
    }
    queue_cv.notify_one();
    while (done.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
      if (context->IsCancelled()) {
        job->abandoned = true;
        count(*m, nullptr, false);
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the request");
      }
    }
    if (!job->error.empty()) {
      count(*m, job.get(), false);
      return grpc::Status(grpc::StatusCode::INTERNAL, "model '" + m->spec.name + "' failed: " + job->error);
    }
    if (job->outputs.size() != m->outputs.names.size()) {
      count(*m, job.get(), false);
      return grpc::Status(grpc::StatusCode::INTERNAL, "model '" + m->spec.name + "' returned " +
                                                          std::to_string(job->outputs.size()) + " tensors, expected " +
                                                          std::to_string(m->outputs.names.size()));
    }
    // Replies travel through the codec the request's inputs used, as the planner prices them.
    place::Codec codec = place::Codec::None;
    for (const auto& t : request->inputs())
      if (const auto p = t.parameters().find(wire::kCodec); p != t.parameters().end())
        codec = place::codec_from_string(p->second.string_param());
    reply->set_model_name(m->spec.name);
    reply->set_model_version("1");
    reply->set_id(request->id());
    for (size_t i = 0; i < job->outputs.size(); ++i) {
      const auto& name = m->outputs.names[i];
      if (request->outputs_size()) {
        bool wanted = false;
        for (const auto& o : request->outputs()) wanted |= o.name() == name;
        if (!wanted) continue;
      }
      const auto encoded = place::encode(job->outputs[i], codec);
      auto* out = reply->add_outputs();
      out->set_name(name);
      out->set_datatype(wire::datatype_of(encoded.data.scalar_type()));
      for (int64_t d : job->outputs[i].sizes()) out->add_shape(d);
      wire::put_codec(encoded, *out->mutable_parameters());
      reply->add_raw_output_contents(wire::raw_bytes(encoded.data));
    }
    auto& params = *reply->mutable_parameters();
    params[wire::kQueueMicros].set_int64_param(static_cast<int64_t>(job->queue_ms * 1000));
    params[wire::kComputeMicros].set_int64_param(static_cast<int64_t>(job->compute_ms * 1000));
    count(*m, job.get(), true);
    return grpc::Status::OK;
  }

  // --- tailor's service
  grpc::Status ModelStatistics(grpc::ServerContext*, const tailor_serve::ModelStatisticsRequest* request,
                               tailor_serve::ModelStatisticsResponse* reply) override {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : statistics())
      if (request->name().empty() || request->name() == s.name) out.push_back(nlohmann::json::parse(s.to_json()));
    if (!request->name().empty() && out.empty())
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "unknown model '" + request->name() + "' (served: " + served_names() + ")");
    reply->set_json(out.dump());
    return grpc::Status::OK;
  }

  std::vector<tailor::serve::ModelStatistics> statistics() {
    std::vector<tailor::serve::ModelStatistics> out;
    for (auto& [name, m] : models) {
      std::lock_guard<std::mutex> lock(m->mutex);
      out.push_back({name, m->succeeded, m->failed, m->refused, m->queue.stats(), m->compute.stats(),
                     m->total.stats()});
    }
    return out;
  }
};

Server::Server(const std::vector<ModelSpec>& models, const ServerOptions& options) : impl_(std::make_unique<Impl>()) {
  TAILOR_CHECK(!models.empty(), "the server needs at least one model (--model NAME=FILE)");
  TAILOR_CHECK(options.executors > 0, "executors must be positive, not ", options.executors);
  TAILOR_CHECK(options.queue_limit > 0, "the queue limit must be positive, not ", options.queue_limit);
  TAILOR_CHECK(options.max_request_bytes > 0, "the request size limit must be positive");
  impl_->options = options;
  if (!options.isa.empty()) set_isa_cap(options.isa);
  for (const auto& spec : models) impl_->load(spec);
  // Every executor compiles every model before the server answers ready, so the first requests are not slow.
  // Every executor compiles and warms up every model on its own thread before the server answers ready: the first
  // runs of oneDNN and LibTorch are slow, and OpenMP work on any other thread would leave a second thread team in
  // the process, which makes libgomp throttle its spinning and pay a wake-up in every parallel region.
  impl_->executables.resize(options.executors);
  std::vector<std::string> errors(options.executors);
  std::mutex warm_mutex;
  std::condition_variable warm_cv;
  size_t warmed = 0;
  for (size_t i = 0; i < impl_->executables.size(); ++i)
    impl_->executors.emplace_back([this, i, &errors, &warm_mutex, &warm_cv, &warmed] {
      try {
        impl_->warm_up(impl_->executables[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(warm_mutex);
        ++warmed;
      }
      warm_cv.notify_all();
      impl_->executor_loop(i);
    });
  {
    std::unique_lock<std::mutex> lock(warm_mutex);
    warm_cv.wait(lock, [&] { return warmed == impl_->executables.size(); });
  }
  for (const auto& e : errors)
    if (!e.empty()) {
      shutdown(0);
      TAILOR_FAIL(e);
    }
}

Server::~Server() { shutdown(0); }

void Server::start() {
  TAILOR_CHECK(!impl_->server, "the server is already started");
  if (impl_->options.keep_freed_memory) keep_freed_memory();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(impl_->options.address, grpc::InsecureServerCredentials(), &impl_->bound_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(impl_->options.max_request_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(INT32_MAX);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, wire::kStreamWindowBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, wire::kMaxFrameBytes);
  // Handler threads wait while their request is queued or computed, so they are bounded by the queue: beyond
  // that, gRPC refuses new calls with RESOURCE_EXHAUSTED instead of growing without limit.
  grpc::ResourceQuota quota("tailor-serve");
  quota.SetMaxThreads(std::max(64, impl_->options.queue_limit + impl_->options.executors + 16));
  builder.SetResourceQuota(quota);
  builder.RegisterService(static_cast<inference::GRPCInferenceService::Service*>(impl_.get()));
  builder.RegisterService(static_cast<tailor_serve::TailorService::Service*>(impl_.get()));
  impl_->server = builder.BuildAndStart();
  TAILOR_CHECK(impl_->server && impl_->bound_port > 0, "cannot listen on ", impl_->options.address,
               " (in use, or not an address of this machine)");
  impl_->ready = true;
}

int Server::port() const { return impl_->bound_port; }

void Server::shutdown(double grace_seconds) {
  if (!impl_) return;
  impl_->ready = false;
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() +
                            std::chrono::microseconds(static_cast<int64_t>(grace_seconds * 1e6)));
    impl_->server->Wait();
    impl_->server.reset();
  }
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mutex);
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  for (auto& t : impl_->executors) t.join();
  impl_->executors.clear();
}

std::vector<ModelStatistics> Server::statistics() const { return impl_->statistics(); }

std::string Server::statistics_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : statistics()) out.push_back(nlohmann::json::parse(s.to_json()));
  return out.dump(2);
}

std::vector<ModelSpec> read_model_repository(const std::string& folder) {
  namespace fs = std::filesystem;
  TAILOR_CHECK(fs::is_directory(folder), "model repository '", folder, "' is not a folder");
  std::vector<fs::path> folders;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_directory()) folders.push_back(entry.path());
  std::sort(folders.begin(), folders.end());
  std::vector<ModelSpec> specs;
  for (const auto& path : folders) {
    const auto file = path / "1" / "model.pt";
    if (!fs::exists(file)) continue;
    std::string text = path.filename().string() + "=" + file.string();
    // tailor's own keys in config.pbtxt's parameters (Triton ignores them).
    std::ifstream config(path / "config.pbtxt");
    std::string line;
    while (std::getline(config, line))
      for (const char* k : {"tailor_backend", "tailor_threads", "tailor_input"})
        if (line.find(std::string("\"") + k + "\"") != std::string::npos) {
          const auto v = line.find("string_value:");
          const auto q0 = v == std::string::npos ? v : line.find('"', v);
          const auto q1 = q0 == std::string::npos ? q0 : line.find('"', q0 + 1);
          if (q1 != std::string::npos) text += std::string(",") + (k + 7) + "=" + line.substr(q0 + 1, q1 - q0 - 1);
        }
    specs.push_back(ModelSpec::parse(text));
  }
  TAILOR_CHECK(!specs.empty(), "model repository '", folder, "' has no NAME/1/model.pt");
  return specs;
}

void write_model_repository(const std::string& folder, const std::vector<ModelSpec>& models, int instances) {
  namespace fs = std::filesystem;
  TAILOR_CHECK(!models.empty(), "no models to write into the repository '", folder, "'");
  TAILOR_CHECK(!fs::exists(folder) || fs::is_directory(folder), "the model repository '", folder,
               "' exists and is not a folder");
  // Everything is read and checked before the first file is written.
  std::map<std::string, std::pair<std::string, std::string>> files;  // model name -> archive bytes, config
  for (const auto& spec : models) {
    const auto loaded = load_model(spec);
    const Model& m = *loaded;
    std::vector<std::string> arguments;
    try {
      auto script = torch::jit::load(spec.file);
      for (const auto& arg : script.get_method("forward").function().getSchema().arguments())
        if (arg.name() != "self") arguments.push_back(arg.name());
    } catch (const c10::Error& e) {
      TAILOR_FAIL("model '", spec.name, "' (", spec.file, "): ", e.what_without_backtrace());
    }
    TAILOR_CHECK(arguments.size() == m.inputs.names.size(), "model '", spec.name, "' (", spec.file, "): forward takes ",
                 arguments.size(), " arguments, the graph ", m.inputs.names.size(), " inputs");
    auto dims = [](const std::vector<int64_t>& shape) {
      std::string out;
      for (size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
      return "[ " + out + " ]";
    };
    std::ostringstream c;
    c << "# Written by tailor " << version() << " for Triton's PyTorch backend and tailor serve --repository.\n"
      << "name: \"" << spec.name << "\"\nplatform: \"pytorch_libtorch\"\nmax_batch_size: 0\ninput [\n";
    for (size_t i = 0; i < arguments.size(); ++i)
      c << "  { name: \"" << arguments[i] << "\" data_type: TYPE_" << m.inputs.datatypes[i] << " dims: "
        << dims(m.inputs.shapes[i]) << " }" << (i + 1 < arguments.size() ? "," : "") << "  # tailor: "
        << m.inputs.names[i] << "\n";
    c << "]\noutput [\n";
    for (size_t i = 0; i < m.outputs.names.size(); ++i)
      c << "  { name: \"OUTPUT__" << i << "\" data_type: TYPE_" << m.outputs.datatypes[i] << " dims: "
        << dims(m.outputs.shapes[i]) << " }" << (i + 1 < m.outputs.names.size() ? "," : "") << "  # tailor: "
        << m.outputs.names[i] << "\n";
    std::string shapes;
    for (const auto& shape : m.inputs.shapes) shapes += (shapes.empty() ? "" : ";") + shape_to_string(shape);
    c << "]\ninstance_group [ { count: " << instances << " kind: KIND_CPU } ]\nparameters: [\n"
      << "  { key: \"tailor_backend\" value: { string_value: \"" << spec.backend << "\" } },\n"
      << "  { key: \"tailor_threads\" value: { string_value: \"" << spec.threads << "\" } },\n"
      << "  { key: \"tailor_input\" value: { string_value: \"" << shapes << "\" } }\n]\n";
    std::ifstream in(spec.file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    TAILOR_CHECK(in.good() || in.eof(), "cannot read '", spec.file, "'");
    files[spec.name] = {std::move(bytes), c.str()};
  }
  for (const auto& [name, f] : files) {
    std::error_code ec;
    fs::create_directories(fs::path(folder) / name / "1", ec);
    TAILOR_CHECK(!ec, "cannot create '", (fs::path(folder) / name / "1").string(), "': ", ec.message());
    write_file_atomically((fs::path(folder) / name / "1" / "model.pt").string(), f.first);
    write_file_atomically((fs::path(folder) / name / "config.pbtxt").string(), f.second);
  }
}

}  // namespace tailor::serve
