// ONNX Runtime (CPU) timing for the benchmarks' peer column: median latency of MODEL.onnx at one input shape.
//   node benchmarks/ort_time.js MODEL.onnx THREADS 1x3x224x224 [SECONDS]
// Prints one JSON line: {"p50_ms":..., "runs":..., "ort":"1.30.0"}. Needs onnxruntime-node in NODE_PATH
// (npm install --ignore-scripts onnxruntime-node@1.30.0); for benchmarks only, never at run time.
const ort = require('onnxruntime-node');

async function main() {
  const [file, threadsArg, shapeArg, secondsArg] = process.argv.slice(2);
  if (!file || !threadsArg || !shapeArg) throw new Error('usage: ort_time.js MODEL.onnx THREADS SHAPE [SECONDS]');
  const threads = Number(threadsArg);
  const shape = shapeArg.split('x').map(Number);
  const seconds = Number(secondsArg || 3);
  const session = await ort.InferenceSession.create(file, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let seed = 1;
  for (let i = 0; i < n; ++i) { seed = (seed * 1103515245 + 12345) % 2147483648; data[i] = seed / 2147483648 - 0.5; }
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
  for (let i = 0; i < 10; ++i) await session.run(feeds);  // warm-up, as tailor's profiler does
  const ms = [];
  const start = process.hrtime.bigint();
  while (ms.length < 20 || (ms.length < 2000 && Number(process.hrtime.bigint() - start) / 1e9 < seconds)) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const mid = (ms.length - 1) / 2;
  const p50 = (ms[Math.floor(mid)] + ms[Math.ceil(mid)]) / 2;
  let version = 'unknown';
  try { version = require('onnxruntime-node/package.json').version; } catch (e) { /* not exported */ }
  console.log(JSON.stringify({ p50_ms: p50, runs: ms.length, ort: version }));
}

main().catch((e) => { console.error(`ort_time: ${e.message}`); process.exit(1); });
