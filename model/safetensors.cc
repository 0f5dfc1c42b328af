#include "model/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/files.h"
#include "base/status.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace {

// The header may not exceed this (the reference implementation's limit), so a corrupt length
// cannot make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

absl::StatusOr<std::string> DtypeName(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return std::string(d.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors: no dtype name for ", c10::toString(type)));
}

absl::StatusOr<torch::ScalarType> DtypeFromName(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", Excerpt(name), "'"));
}

}  // namespace

absl::StatusOr<std::string> EncodeSafetensors(const NamedTensors& tensors,
                                              const std::map<std::string, std::string>& metadata) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || header.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: bad or repeated name '", name, "'"));
    }
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    auto dtype = DtypeName(t.scalar_type());
    if (!dtype.ok()) return dtype.status();
    const uint64_t bytes = t.numel() * t.element_size();
    header[name] = {
        {"dtype", *dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(t));
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned

  std::string out;
  out.reserve(8 + json.size() + offset);
  const uint64_t length = json.size();
  out.append(reinterpret_cast<const char*>(&length), sizeof(length));
  out.append(json);
  for (const auto& t : contiguous) {
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RECUR_ASSIGN_OR_RETURN(const std::string bytes, EncodeSafetensors(tensors, metadata));
  return WriteFileContents(path, bytes);
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  RECUR_ASSIGN_OR_RETURN(const std::string bytes, ReadFileContents(path));
  return ParseSafetensors(bytes, path);
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes,
                                                 absl::string_view source) {
  const uint64_t file_size = bytes.size();
  auto error = [&source](const auto&... parts) {
    return absl::DataLossError(absl::StrCat(source, ": ", parts...));
  };
  if (file_size < 8)
    return error("file is ", file_size, " bytes, shorter than the 8-byte header length");
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), sizeof(header_size));
  if (header_size > kMaxHeaderBytes || header_size > file_size - 8) {
    return error("header length ", header_size, " does not fit in a file of ", file_size, " bytes");
  }
  auto header =
      nlohmann::json::parse(bytes.substr(8, header_size), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return error("header is not a JSON object");

  const uint64_t data_size = file_size - 8 - header_size;
  const absl::string_view data = bytes.substr(8 + header_size);

  SafetensorsFile file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          return error("__metadata__ value for '", Excerpt(k), "' is not a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() || !entry.contains("data_offsets") ||
        !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
      return error("tensor '", Excerpt(name), "' lacks a dtype, shape or data_offsets pair");
    }
    auto dtype = DtypeFromName(entry["dtype"].get<std::string>());
    if (!dtype.ok()) return error("tensor '", Excerpt(name), "': ", dtype.status().message());
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& dim : entry["shape"]) {
      if (!dim.is_number_unsigned())
        return error("tensor '", Excerpt(name), "' has a bad dimension ", Excerpt(dim.dump()));
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, d, &numel)) {
        return error("tensor '", Excerpt(name), "' has an impossibly large shape");
      }
      shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return error("tensor '", Excerpt(name), "' has non-numeric data_offsets");
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, c10::elementSize(*dtype), &bytes)) {
      return error("tensor '", Excerpt(name), "' has an impossibly large shape");
    }
    if (begin > end || end > data_size) {
      return error("tensor '", Excerpt(name), "' data_offsets [", begin, ", ", end,
                   ") lie outside the ", data_size, " bytes of data");
    }
    if (end - begin != bytes) {
      return error("tensor '", Excerpt(name), "' spans ", end - begin,
                   " bytes but its shape and dtype need ", bytes);
    }
    ranges.emplace_back(begin, end);
    auto tensor = torch::empty(shape, torch::TensorOptions().dtype(*dtype));
    if (bytes > 0) std::memcpy(tensor.data_ptr(), data.data() + begin, bytes);
    file.tensors.emplace(name, std::move(tensor));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return error("tensor data ranges overlap");
  }
  return file;
}

}  // namespace recur
