// Precompiled header for tailor's own translation units (not installed).
#pragma once
#include <torch/torch.h>
#include <torch/script.h>
#include <map>
#include <set>
#include <string>
#include <vector>
