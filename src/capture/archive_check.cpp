// The zip structure and CRC-32 check of archives (check_archive in capture.hpp). LibTorch's reader skips the CRCs
// and trusts the bytes (a damaged archive can crash it: pytorch/pytorch#77573, #179581, answered "load only trusted
// files"), so a file damaged after it was written is refused here with a message instead. Only what archives
// written by PyTorch, LibTorch and Python's zipfile use: stored or deflated entries, zip64 sizes and offsets.
#include "tailor/capture/archive.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include <zlib.h>

#include "tailor/core/error.hpp"

namespace tailor {
namespace {

class Mapped {
 public:
  explicit Mapped(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY);
    TAILOR_CHECK(fd_ >= 0, "cannot open model file '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      TAILOR_CHECK(p != MAP_FAILED, "cannot read model file '", path, "': ", std::strerror(errno));
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~Mapped() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct Reader {
  const uint8_t* b;
  uint64_t size;
  const std::string& path;

  [[noreturn]] void damaged(const std::string& why) const {
    TAILOR_FAIL("model file '", path, "' is damaged (", why,
                "): it changed or was cut short after it was written; write it again");
  }
  void need(uint64_t at, uint64_t n, const char* what) const {
    if (at > size || n > size - at) damaged(std::string(what) + " lies past the end of the file");
  }
  uint64_t le(uint64_t at, int n, const char* what) const {
    need(at, static_cast<uint64_t>(n), what);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[at + static_cast<uint64_t>(i)];
    return v;
  }
};

constexpr uint32_t kEnd = 0x06054b50, kEnd64 = 0x06064b50, kLocator64 = 0x07064b50, kCentral = 0x02014b50,
                   kLocal = 0x04034b50;

}  // namespace

void check_archive(const std::string& path) {
  const Mapped file(path);
  const Reader r{file.data(), file.size(), path};
  if (r.size < 22) r.damaged("too short to be a zip archive");
  // The end-of-central-directory record: the last one whose comment reaches exactly to the end of the file.
  uint64_t end = UINT64_MAX;
  const uint64_t lowest = r.size > 22 + 65535 ? r.size - 22 - 65535 : 0;
  for (uint64_t at = r.size - 22 + 1; at-- > lowest;)
    if (r.le(at, 4, "the end record") == kEnd && at + 22 + r.le(at + 20, 2, "the end record") == r.size) {
      end = at;
      break;
    }
  if (end == UINT64_MAX) r.damaged("no end-of-central-directory record");
  uint64_t entries = r.le(end + 10, 2, "the end record");
  uint64_t cd_size = r.le(end + 12, 4, "the end record");
  uint64_t cd_offset = r.le(end + 16, 4, "the end record");
  uint64_t cd_limit = end;
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (end < 20 || r.le(end - 20, 4, "the zip64 locator") != kLocator64) r.damaged("no zip64 locator");
    const uint64_t end64 = r.le(end - 20 + 8, 8, "the zip64 locator");
    if (r.le(end64, 4, "the zip64 end record") != kEnd64) r.damaged("no zip64 end record");
    entries = r.le(end64 + 32, 8, "the zip64 end record");
    cd_size = r.le(end64 + 40, 8, "the zip64 end record");
    cd_offset = r.le(end64 + 48, 8, "the zip64 end record");
    cd_limit = end64;
  }
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset) r.damaged("the central directory lies past its end");
  if (entries > cd_size / 46) r.damaged("more entries than the central directory holds");

  uint64_t at = cd_offset;
  std::vector<uint8_t> inflated;
  for (uint64_t i = 0; i < entries; ++i) {
    if (r.le(at, 4, "a central directory entry") != kCentral) r.damaged("a central directory entry is missing");
    const uint64_t method = r.le(at + 10, 2, "a central directory entry");
    const uint64_t crc = r.le(at + 16, 4, "a central directory entry");
    uint64_t packed = r.le(at + 20, 4, "a central directory entry");
    uint64_t unpacked = r.le(at + 24, 4, "a central directory entry");
    const uint64_t name_len = r.le(at + 28, 2, "a central directory entry");
    const uint64_t extra_len = r.le(at + 30, 2, "a central directory entry");
    const uint64_t comment_len = r.le(at + 32, 2, "a central directory entry");
    uint64_t local = r.le(at + 42, 4, "a central directory entry");
    r.need(at + 46, name_len + extra_len + comment_len, "a central directory entry");
    const std::string name(reinterpret_cast<const char*>(r.b + at + 46), name_len);
    // Zip64 extra field: the 64-bit values of whichever 32-bit fields are 0xFFFFFFFF, in this order.
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = r.le(x, 2, "an extra field"), len = r.le(x + 2, 2, "an extra field");
      if (id == 1) {
        uint64_t f = x + 4;
        if (unpacked == 0xFFFFFFFF) unpacked = r.le(f, 8, "a zip64 field"), f += 8;
        if (packed == 0xFFFFFFFF) packed = r.le(f, 8, "a zip64 field"), f += 8;
        if (local == 0xFFFFFFFF) local = r.le(f, 8, "a zip64 field");
      }
      x += 4 + len;
    }
    const std::string entry = "entry '" + name + "'";
    if (r.le(local, 4, "a local header") != kLocal) r.damaged(entry + " has no local header");
    const uint64_t local_name = r.le(local + 26, 2, "a local header"), local_extra = r.le(local + 28, 2, "a local header");
    r.need(local + 30, local_name + local_extra, "a local header");
    if (local_name != name_len || std::memcmp(r.b + local + 30, name.data(), name_len) != 0)
      r.damaged(entry + "'s local header names another entry");
    const uint64_t data = local + 30 + local_name + local_extra;
    if (data > cd_offset || packed > cd_offset - data) r.damaged(entry + "'s data lies past the central directory");
    uLong sum = crc32(0L, Z_NULL, 0);
    if (method == 0) {
      if (packed != unpacked) r.damaged(entry + " is stored but its sizes differ");
      for (uint64_t done = 0; done < packed;) {
        const uInt n = static_cast<uInt>(std::min<uint64_t>(packed - done, 1u << 30));
        sum = crc32(sum, r.b + data + done, n);
        done += n;
      }
    } else if (method == 8) {
      // Deflated (Python's zipfile can write these); bounded so a damaged size cannot ask for gigabytes.
      if (unpacked > 1032 * packed + 1024) r.damaged(entry + " claims an impossible size");
      TAILOR_CHECK(packed <= 0xFFFFFFFFu && unpacked <= 0xFFFFFFFFu, "model file '", path, "': ", entry,
                   " is a deflated entry over 4 GiB, which tailor cannot check; store it uncompressed");
      inflated.resize(unpacked);
      z_stream z{};
      if (inflateInit2(&z, -MAX_WBITS) != Z_OK) r.damaged("zlib cannot start");
      z.next_in = const_cast<Bytef*>(r.b + data);
      z.avail_in = static_cast<uInt>(packed);
      z.next_out = inflated.data();
      z.avail_out = static_cast<uInt>(unpacked);
      const int status = inflate(&z, Z_FINISH);
      const uint64_t out = z.total_out;
      inflateEnd(&z);
      if (status != Z_STREAM_END || out != unpacked) r.damaged(entry + " does not inflate to its size");
      sum = crc32(sum, inflated.data(), static_cast<uInt>(unpacked));
    } else {
      r.damaged(entry + " uses compression method " + std::to_string(method) + " (stored or deflated expected)");
    }
    if (sum != crc) r.damaged(entry + " fails its CRC-32 check");
    at += 46 + name_len + extra_len + comment_len;
  }
}

}  // namespace tailor
