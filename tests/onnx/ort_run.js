// Runs ONNX models in ONNX Runtime (CPU) for tailor's tests: each job names a model, raw float32 input files
// with their shapes, and an output prefix; outputs are written as raw float32 files with a JSON line of shapes.
//   node tests/onnx/ort_run.js JOBS.json
// JOBS.json: [{"model": "m.onnx", "inputs": [{"file": "x.bin", "shape": [1, 3, 224, 224]}], "out": "prefix",
//              "threads": 1}]
// Writes prefix_K.bin per output and prefix.json ({"outputs": [{"name", "shape"}], "ort": version}). Exits 1
// with the message on any failure. Needs onnxruntime-node (scripts/ort.sh); for tests and benchmarks only.
const fs = require('fs');
const ort = require('onnxruntime-node');

async function runJob(job) {
  const session = await ort.InferenceSession.create(job.model, {
    intraOpNumThreads: job.threads || 1, interOpNumThreads: 1, graphOptimizationLevel: 'all',
  });
  const feeds = {};
  job.inputs.forEach((input, k) => {
    const bytes = fs.readFileSync(input.file);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    feeds[session.inputNames[k]] = new ort.Tensor('float32', Float32Array.from(data), input.shape);
  });
  const results = await session.run(feeds);
  const outputs = [];
  session.outputNames.forEach((name, k) => {
    const t = results[name];
    const data = t.type === 'float32' ? t.data : Float32Array.from(t.data, Number);
    fs.writeFileSync(`${job.out}_${k}.bin`, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    outputs.push({ name, shape: t.dims, type: t.type });
  });
  let version = 'unknown';
  try { version = require('onnxruntime-node/package.json').version; } catch (e) { /* not exported */ }
  fs.writeFileSync(`${job.out}.json`, JSON.stringify({ outputs, ort: version }));
}

async function main() {
  const jobs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const job of jobs) {
    try {
      await runJob(job);
    } catch (e) {
      throw new Error(`${job.model}: ${e.message}`);
    }
  }
}

main().catch((e) => { console.error(`ort_run: ${e.message}`); process.exit(1); });
