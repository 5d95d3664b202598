#include "inc/utils.h"

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace nasfpn {

std::string RealPath(const std::string &path) {
  char resolved[PATH_MAX];
  if (path.empty() || realpath(path.c_str(), resolved) == nullptr) {
    return "";
  }
  return std::string(resolved);
}

bool HasImageSuffix(const std::string &file_name) {
  const std::string::size_type dot = file_name.rfind('.');
  if (dot == std::string::npos) {
    return false;
  }
  std::string suffix = file_name.substr(dot + 1);
  std::transform(suffix.begin(), suffix.end(), suffix.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return suffix == "jpg" || suffix == "jpeg" || suffix == "png" || suffix == "bmp";
}

std::vector<std::string> ListImageFiles(const std::string &dir, std::string *error) {
  std::vector<std::string> names;
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    *error = "cannot open image folder " + dir + ": " + std::strerror(errno);
    return names;
  }
  for (const dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (name.empty() || name[0] == '.' || !HasImageSuffix(name)) {
      continue;
    }
    struct stat info;
    const std::string full = dir + "/" + name;
    if (stat(full.c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
      names.push_back(name);
    }
  }
  closedir(handle);
  // Sorted by name so the order (and the time file) matches the Python twin's sorted(os.listdir()).
  std::sort(names.begin(), names.end());
  std::vector<std::string> paths;
  paths.reserve(names.size());
  for (const std::string &name : names) {
    paths.push_back(dir + "/" + name);
  }
  return paths;
}

std::string FileStem(const std::string &path) {
  const std::string::size_type slash = path.find_last_of('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string::size_type dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

bool EnsureDirectory(const std::string &path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return false;
  }
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

mindspore::MSTensor ReadFileToTensor(const std::string &path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) {
    return mindspore::MSTensor(nullptr);
  }
  const std::streamsize size = file.tellg();
  if (size <= 0) {
    return mindspore::MSTensor(nullptr);
  }
  file.seekg(0, std::ios::beg);
  mindspore::MSTensor bytes(path, mindspore::DataType::kNumberTypeUInt8, {static_cast<int64_t>(size)},
                            nullptr, static_cast<size_t>(size));
  if (!file.read(static_cast<char *>(bytes.MutableData()), size)) {
    return mindspore::MSTensor(nullptr);
  }
  return bytes;
}

bool WriteFileAtomically(const std::string &path, const void *data, size_t size) {
  const std::string tmp_path = path + ".tmp";
  FILE *out = std::fopen(tmp_path.c_str(), "wb");
  if (out == nullptr) {
    return false;
  }
  const bool written = std::fwrite(data, 1, size, out) == size;
  const bool closed = std::fclose(out) == 0;
  if (!written || !closed || std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    std::remove(tmp_path.c_str());
    return false;
  }
  return true;
}

}  // namespace nasfpn
