// tailor/tailor.hpp: the umbrella header. Include this to get capture, the graph IR, analysis, export,
// passes and pipelines, transforms, the model zoo, the Fashion-MNIST reader, backends and profiles, pruning,
// quantization, training and distillation (with c10d/Gloo ranks), and compression recipes.
#pragma once

#include "tailor/capture/capture.hpp"
#include "tailor/core/build_info.hpp"
#include "tailor/core/error.hpp"
#include "tailor/core/text.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/ir/graph.hpp"
#include "tailor/ir/graph_module.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/ir/provenance.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/transforms/transforms.hpp"
#include "tailor/version.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/runtime/isa.hpp"
#include "tailor/profile/profiler.hpp"
#include "tailor/variant/card.hpp"
#include "tailor/prune/prune.hpp"
#include "tailor/quant/quant.hpp"
#include "tailor/train/train.hpp"
#include "tailor/train/distributed.hpp"
#include "tailor/recipe/recipe.hpp"
