// tailor/capture/archive.hpp: the integrity check tailor makes before LibTorch reads an archive. LibTorch's zip
// reader skips the CRC-32s and trusts the bytes, so a damaged file can crash it; this refuses it with a message.
#pragma once

#include <string>

namespace tailor {

/// Checks that the file at `path` is a whole zip archive whose every entry matches its CRC-32, as `load`, the
/// trainer's checkpoints and supernets do before reading one; throws tailor::Error naming the file and the entry.
void check_archive(const std::string& path);

}  // namespace tailor
