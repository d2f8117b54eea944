// Server overhead and throughput (docs/serving.md): an in-process `tailor serve` server and OIP client on loopback.
//   bench_serve MODEL.pt SHAPE [MODEL.pt SHAPE ...] [--requests N] [--seconds S] [--return-freed-memory]
// Per model: the ModelInfer round trip less the server's compute, p50 over N sequential requests (1 executor,
// 1 thread); then throughput with 2 executors (1 thread each) under 4 closed-loop clients against the same model
// run by 2 threads in-process (each with its own executable), for S seconds each, and their ratio.
// Per model also the transport's floor on this machine, same bytes, same idle time: a bare gRPC server with the
// same channel settings and raw TCP (C sockets, TCP_NODELAY), each answering after holding a core for the model's
// compute time, so that what an idle client thread costs to wake is in both.
// --return-freed-memory leaves glibc's malloc as it is (serve::keep_freed_memory not called), to compare.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include "grpc_predict_v2.grpc.pb.h"
#include "wire.hpp"

#include "tailor/serve/serve.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
double p50_of(std::vector<double> v) { return LatencyStats::from_samples(std::move(v)).p50_ms; }

void hold_core(double ms) {
  const auto until = Clock::now() + std::chrono::duration<double, std::milli>(ms);
  while (Clock::now() < until) {
  }
}

// An OIP server that decodes nothing and answers a 12-byte output after hold_core(compute_ms).
struct BareService final : inference::GRPCInferenceService::Service {
  double compute_ms = 0;
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* reply) override {
    hold_core(compute_ms);
    reply->set_model_name(request->model_name());
    auto* out = reply->add_outputs();
    out->set_name("y");
    out->set_datatype("FP32");
    out->add_shape(3);
    reply->add_raw_output_contents(std::string(12, '\0'));
    return grpc::Status::OK;
  }
};

// Round trip less compute_ms, p50, of `bytes` through a bare gRPC server with tailor's channel settings.
double bare_grpc_ms(const std::string& bytes, double compute_ms, int requests) {
  BareService service;
  service.compute_ms = compute_ms;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(INT32_MAX);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, serve::wire::kStreamWindowBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, serve::wire::kMaxFrameBytes);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, serve::wire::kStreamWindowBytes);
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, serve::wire::kMaxFrameBytes);
  auto stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
  std::vector<double> over;
  for (int k = 0; k < requests + 20; ++k) {
    const auto t0 = Clock::now();
    inference::ModelInferRequest request;
    request.set_model_name("m");
    request.add_inputs()->set_name("x");
    request.add_raw_input_contents(bytes);
    inference::ModelInferResponse reply;
    grpc::ClientContext context;
    TAILOR_CHECK(stub->ModelInfer(&context, request, &reply).ok(), "the bare gRPC server failed");
    if (k >= 20) over.push_back(ms_between(t0, Clock::now()) - compute_ms);
  }
  server->Shutdown();
  return p50_of(std::move(over));
}

// The same over a raw TCP connection: the client writes the bytes, the server reads them all, holds a core and
// answers 12 bytes.
double raw_tcp_ms(const std::string& bytes, double compute_ms, int requests) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  TAILOR_CHECK(listener >= 0 && ::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                   ::listen(listener, 1) == 0 &&
                   ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0,
               "raw TCP: cannot listen on loopback");
  const int one = 1;
  std::thread server([&] {
    const int c = ::accept(listener, nullptr, nullptr);
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::vector<char> buffer(bytes.size());
    const char reply[12] = {};
    for (;;) {
      size_t got = 0;
      while (got < bytes.size()) {
        const ssize_t n = ::read(c, buffer.data() + got, bytes.size() - got);
        if (n <= 0) {
          ::close(c);
          return;
        }
        got += static_cast<size_t>(n);
      }
      hold_core(compute_ms);
      if (::write(c, reply, sizeof reply) != sizeof reply) break;
    }
    ::close(c);
  });
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  TAILOR_CHECK(::connect(s, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0, "raw TCP: cannot connect");
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<double> over;
  char reply[12];
  for (int k = 0; k < requests + 20; ++k) {
    const auto t0 = Clock::now();
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::write(s, bytes.data() + sent, bytes.size() - sent);
      TAILOR_CHECK(n > 0, "raw TCP: write failed");
      sent += static_cast<size_t>(n);
    }
    size_t got = 0;
    while (got < sizeof reply) {
      const ssize_t n = ::read(s, reply + got, sizeof reply - got);
      TAILOR_CHECK(n > 0, "raw TCP: read failed");
      got += static_cast<size_t>(n);
    }
    if (k >= 20) over.push_back(ms_between(t0, Clock::now()) - compute_ms);
  }
  ::close(s);
  server.join();
  ::close(listener);
  return p50_of(std::move(over));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::pair<std::string, std::string>> models;
  int requests = 300;
  double seconds = 10;
  bool keep = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--requests") && i + 1 < argc) requests = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--return-freed-memory")) keep = false;
    else if (i + 1 < argc) {
      models.emplace_back(argv[i], argv[i + 1]);
      ++i;
    }
  }
  if (models.empty()) {
    std::fprintf(stderr, "usage: bench_serve MODEL.pt SHAPE [...] [--requests N] [--seconds S] [--return-freed-memory]\n");
    return 2;
  }
  std::printf("CPU %s, ISA %s, freed memory %s\n", MachineInfo::detect().cpu_model.c_str(),
              effective_isa().c_str(), keep ? "kept for reuse" : "returned (glibc's default)");
  serve::ClientOptions client_options;
  client_options.keep_freed_memory = keep;
  for (const auto& [file, shape_text] : models) {
    const auto shape = parse_shape(shape_text);
    const auto x = torch::randn(shape);
    auto spec = serve::ModelSpec::parse("m=" + file + ",input=" + shape_text + ",threads=1");
    // Overhead: one executor, sequential requests.
    {
      serve::ServerOptions o;
      o.keep_freed_memory = keep;
      o.address = "127.0.0.1:0";
      o.executors = 1;
      serve::Server server({spec}, o);
      server.start();
      serve::Client client("127.0.0.1:" + std::to_string(server.port()), client_options);
      const std::string in = client.model_metadata("m").inputs[0].name;
      std::vector<double> over, net, queue, compute, total;
      for (int k = 0; k < requests + 20; ++k) {
        const auto r = client.infer("m", {{in, x}});
        if (k < 20) continue;
        const auto& t = r.timing;
        over.push_back(t.total_ms - t.compute_ms);
        net.push_back(t.network_ms);
        queue.push_back(t.queue_ms);
        compute.push_back(t.compute_ms);
        total.push_back(t.total_ms);
      }
      std::printf("%s %s (%lld bytes in): round trip p50 %.3f ms, compute %.3f ms, overhead (round trip - compute) "
                  "p50 %.3f ms [network %.3f, queue+decode %.3f]\n",
                  file.c_str(), shape_text.c_str(), static_cast<long long>(x.numel() * 4), p50_of(total),
                  p50_of(compute), p50_of(over), p50_of(net), p50_of(queue));
      server.shutdown();
      const std::string bytes = serve::wire::raw_bytes(x);
      const double compute_ms = p50_of(compute);
      const double bare = bare_grpc_ms(bytes, compute_ms, requests), raw = raw_tcp_ms(bytes, compute_ms, requests);
      std::printf("%s: transport floor, same bytes, %.3f ms held per request: bare gRPC %.3f ms, raw TCP %.3f ms; "
                  "tailor serve over bare gRPC %.3f ms\n",
                  file.c_str(), compute_ms, bare, raw, p50_of(over) - bare);
    }
    // Throughput: 2 executors under 4 clients, against 2 in-process threads.
    {
      serve::ServerOptions o;
      o.keep_freed_memory = keep;
      o.address = "127.0.0.1:0";
      o.executors = 2;
      serve::Server server({spec}, o);
      server.start();
      const std::string address = "127.0.0.1:" + std::to_string(server.port());
      const std::string in = serve::Client(address, client_options).model_metadata("m").inputs[0].name;
      std::atomic<bool> stop{false};
      std::atomic<long> served{0};
      std::vector<std::thread> clients;
      for (int c = 0; c < 4; ++c)
        clients.emplace_back([&] {
          serve::Client client(address, client_options);
          while (!stop) {
            client.infer("m", {{in, x}});
            ++served;
          }
        });
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      const long s = served;
      stop = true;
      for (auto& t : clients) t.join();
      server.shutdown();
      GraphModule gm = load(file);
      CompileOptions co;
      co.input_shapes = {shape};
      co.threads = 1;
      std::atomic<long> ran{0};
      std::atomic<bool> halt{false};
      std::vector<std::thread> workers;
      for (int w = 0; w < 2; ++w)
        workers.emplace_back([&] {
          set_threads(1);
          auto exe = compile("onednn-cpu", *gm, co);
          torch::NoGradGuard no_grad;
          for (int k = 0; k < 5; ++k) exe->run({x});
          while (!halt) {
            exe->run({x});
            ++ran;
          }
        });
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      const long r = ran;
      halt = true;
      for (auto& t : workers) t.join();
      std::printf("%s: served %.1f req/s (2 executors, 4 clients) vs in-process %.1f req/s (2 threads): ratio %.3f\n",
                  file.c_str(), s / seconds, r / seconds, static_cast<double>(s) / static_cast<double>(r));
    }
  }
  return 0;
}
