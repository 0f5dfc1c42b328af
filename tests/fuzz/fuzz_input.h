#ifndef RECUR_TESTS_FUZZ_FUZZ_INPUT_H_
#define RECUR_TESTS_FUZZ_FUZZ_INPUT_H_

// Shapes a fuzzer's bytes into what the parsers expect, so that mutations reach past the first
// check: a safetensors file whose 8-byte header length is right half of the time.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace recur::fuzz {

// Either the raw bytes, or a JSON header (of the fuzzer's bytes) with a correct length prefix
// followed by data bytes.
inline std::string SafetensorsBytes(FuzzedDataProvider& input) {
  if (input.ConsumeBool()) return input.ConsumeRemainingBytesAsString();
  const std::string header = input.ConsumeRandomLengthString(4096);
  const uint64_t length = header.size();
  std::string bytes(reinterpret_cast<const char*>(&length), sizeof(length));
  return bytes + header + input.ConsumeRemainingBytesAsString();
}

// Aborts (a finding) when `condition` fails: an invariant the code under test promises.
inline void Require(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace recur::fuzz

#endif  // RECUR_TESTS_FUZZ_FUZZ_INPUT_H_
