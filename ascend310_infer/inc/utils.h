/**
 * Small file-system helpers of the Ascend 310 application (POSIX only, no std::filesystem so that the
 * GCC 7 toolchains shipped with the Ascend toolkits build it).
 */
#ifndef NASFPN_ASCEND310_INFER_INC_UTILS_H_
#define NASFPN_ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "include/api/types.h"

namespace nasfpn {

// Canonical absolute path of an existing file or directory; empty when it does not exist.
std::string RealPath(const std::string &path);

// True for the image suffixes the application decodes (.jpg .jpeg .png .bmp, any case).
bool HasImageSuffix(const std::string &file_name);

// Full paths of the image files directly inside `dir`, sorted by file name. Hidden files and
// sub-directories are skipped. Sets *error (and returns an empty list) when `dir` cannot be read.
std::vector<std::string> ListImageFiles(const std::string &dir, std::string *error);

// "a/b/000000397133.jpg" -> "000000397133".
std::string FileStem(const std::string &path);

// mkdir -p for one level; true when the directory exists afterwards.
bool EnsureDirectory(const std::string &path);

// The raw bytes of a file as a uint8 tensor [size]; a null tensor when the file cannot be read.
mindspore::MSTensor ReadFileToTensor(const std::string &path);

// Writes `size` bytes to `path` through "<path>.tmp" + rename, so a crash never leaves a truncated
// file under the final name. Returns false (with errno set) on failure.
bool WriteFileAtomically(const std::string &path, const void *data, size_t size);

}  // namespace nasfpn

#endif  // NASFPN_ASCEND310_INFER_INC_UTILS_H_
