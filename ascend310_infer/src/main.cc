/**
 * NAS-FPN (RetinaNet) inference on Ascend 310 with the MindSpore C++ API.
 *
 * For every image in --dataset_path (sorted by name): decode -> resize to image_height x image_width
 * (bilinear) -> normalise (ImageNet mean/std on RGB 0-255) -> HWC2CHW -> Model::Predict. Writes
 *   result_Files/<stem>_0.bin   float32 [A, 4]  boxes (y1, x1, y2, x2) in [0, 1]
 *   result_Files/<stem>_1.bin   float32 [A, C]  sigmoid class scores (column 0 = background)
 *   time_Result/test_perform_static.txt   mean Predict time in ms
 * into the working directory. postprocess.py turns the .bin files into COCO mAP.
 * infer_310_twin.py is the same program in Python (MINDIR via MindSpore, or ONNX Runtime).
 */
#include <gflags/gflags.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "include/dataset/execute.h"
#include "include/dataset/transforms.h"
#include "include/dataset/vision.h"
#include "inc/utils.h"

namespace ms = mindspore;
namespace ds = mindspore::dataset;

DEFINE_string(mindir_path, "", "MINDIR file written by export.py (batch size 1)");
DEFINE_string(dataset_path, "", "folder of images (.jpg/.jpeg/.png/.bmp) to run inference on");
DEFINE_int32(device_id, 0, "Ascend 310 device id");
DEFINE_int32(image_height, 640, "network input height (the exported --img_shape[0])");
DEFINE_int32(image_width, 640, "network input width (the exported --img_shape[1])");

namespace {

constexpr char kResultDir[] = "result_Files";
constexpr char kTimeDir[] = "time_Result";
constexpr char kTimeFile[] = "time_Result/test_perform_static.txt";

// The same normalisation as training/eval (src/data/transforms.py): RGB 0-255, ImageNet statistics.
const std::vector<float> kMean = {123.675f, 116.28f, 103.53f};
const std::vector<float> kStd = {58.395f, 57.12f, 57.375f};

int Fail(const std::string &message) {
  std::cerr << "error: " << message << std::endl;
  return 1;
}

bool BuildModel(const std::string &mindir_path, int device_id, ms::Model *model, std::string *error) {
  auto context = std::make_shared<ms::Context>();
  auto ascend310 = std::make_shared<ms::Ascend310DeviceInfo>();
  ascend310->SetDeviceID(static_cast<uint32_t>(device_id));
  context->MutableDeviceInfo().push_back(ascend310);

  ms::Graph graph;
  ms::Status status = ms::Serialization::Load(mindir_path, ms::ModelType::kMindIR, &graph);
  if (status != ms::kSuccess) {
    *error = "cannot load MINDIR " + mindir_path + ": " + status.ToString();
    return false;
  }
  status = model->Build(ms::GraphCell(graph), context);
  if (status != ms::kSuccess) {
    *error = "cannot build the model on Ascend 310 device " + std::to_string(device_id) + ": " +
             status.ToString();
    return false;
  }
  return true;
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::ostringstream text;
  text << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    text << (i ? ", " : "") << shape[i];
  }
  text << "]";
  return text.str();
}

// The exported graph must take one float32 [1, 3, H, W] input matching the flags.
bool CheckModelInput(const std::vector<ms::MSTensor> &inputs, std::string *error) {
  const std::vector<int64_t> expected = {1, 3, FLAGS_image_height, FLAGS_image_width};
  if (inputs.size() != 1 || inputs[0].Shape() != expected ||
      inputs[0].DataType() != ms::DataType::kNumberTypeFloat32) {
    *error = "the MINDIR's input is " +
             (inputs.empty() ? std::string("missing") : ShapeToString(inputs[0].Shape())) +
             ", expected one float32 " + ShapeToString(expected) +
             " (export with --export_batch_size=1 and --img_shape=[image_height,image_width])";
    return false;
  }
  return true;
}

bool SaveOutputs(const std::string &stem, const std::vector<ms::MSTensor> &outputs, std::string *error) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].DataType() != ms::DataType::kNumberTypeFloat32) {
      *error = "output " + std::to_string(i) + " is not float32";
      return false;
    }
    const std::string path = std::string(kResultDir) + "/" + stem + "_" + std::to_string(i) + ".bin";
    const std::shared_ptr<const void> data = outputs[i].Data();
    if (data == nullptr || !nasfpn::WriteFileAtomically(path, data.get(), outputs[i].DataSize())) {
      *error = "cannot write " + path;
      return false;
    }
  }
  return true;
}

bool WriteTimeFile(double mean_ms, size_t count) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(3) << "NN inference cost average time: " << mean_ms
       << " ms of infer_count " << count << "\n";
  const std::string content = text.str();
  std::cout << content;
  return nasfpn::WriteFileAtomically(kTimeFile, content.data(), content.size());
}

// Flags and the image folder, checked before the (slow) model build. Empty on success.
std::string CheckInputs(const std::string &mindir_path, const std::string &dataset_path,
                        const std::vector<std::string> &images, const std::string &list_error) {
  if (mindir_path.empty()) {
    return "--mindir_path: MINDIR file not found: '" + FLAGS_mindir_path + "'";
  }
  if (dataset_path.empty()) {
    return "--dataset_path: image folder not found: '" + FLAGS_dataset_path + "'";
  }
  if (FLAGS_image_height <= 0 || FLAGS_image_width <= 0) {
    return "--image_height/--image_width: expected positive sizes";
  }
  if (!list_error.empty()) {
    return list_error;
  }
  if (images.empty()) {
    return "no .jpg/.jpeg/.png/.bmp files in " + dataset_path;
  }
  std::set<std::string> stems;
  for (const std::string &image_path : images) {
    if (!stems.insert(nasfpn::FileStem(image_path)).second) {
      return "two images share the stem of " + image_path + " (their .bin files would collide)";
    }
  }
  return "";
}

// One image: read -> preprocess -> Predict (timed) -> .bin files. Adds the Predict time to *total_ms.
bool InferImage(const std::string &image_path, const ms::MSTensor &model_input, ds::Execute *preprocess,
                ms::Model *model, double *total_ms, std::string *error) {
  ms::MSTensor image = nasfpn::ReadFileToTensor(image_path);
  if (image == nullptr) {
    *error = "cannot read image " + image_path;
    return false;
  }
  ms::Status status = (*preprocess)(image, &image);
  if (status != ms::kSuccess) {
    *error = "cannot decode/preprocess " + image_path + ": " + status.ToString();
    return false;
  }
  if (image.DataSize() != model_input.DataSize()) {
    *error = "preprocessed " + image_path + " has " + std::to_string(image.DataSize()) +
             " bytes, the model input needs " + std::to_string(model_input.DataSize());
    return false;
  }
  std::vector<ms::MSTensor> inputs;
  inputs.emplace_back(model_input.Name(), model_input.DataType(), model_input.Shape(), image.Data().get(),
                      image.DataSize());
  std::vector<ms::MSTensor> outputs;
  const auto start = std::chrono::steady_clock::now();
  status = model->Predict(inputs, &outputs);
  const auto stop = std::chrono::steady_clock::now();
  if (status != ms::kSuccess) {
    *error = "Predict failed on " + image_path + ": " + status.ToString();
    return false;
  }
  *total_ms += std::chrono::duration<double, std::milli>(stop - start).count();
  if (outputs.size() != 2) {
    *error = "the model returned " + std::to_string(outputs.size()) + " outputs, expected 2 (boxes, scores)";
    return false;
  }
  if (!SaveOutputs(nasfpn::FileStem(image_path), outputs, error)) {
    *error += " (image " + image_path + ")";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  gflags::SetUsageMessage("--mindir_path=MODEL.mindir --dataset_path=IMAGE_DIR [--device_id=0] "
                          "[--image_height=640] [--image_width=640]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const std::string mindir_path = nasfpn::RealPath(FLAGS_mindir_path);
  const std::string dataset_path = nasfpn::RealPath(FLAGS_dataset_path);
  std::string error;
  const std::vector<std::string> images =
      dataset_path.empty() ? std::vector<std::string>() : nasfpn::ListImageFiles(dataset_path, &error);
  error = CheckInputs(mindir_path, dataset_path, images, error);
  if (!error.empty()) {
    return Fail(error);
  }
  if (!nasfpn::EnsureDirectory(kResultDir) || !nasfpn::EnsureDirectory(kTimeDir)) {
    return Fail(std::string("cannot create ") + kResultDir + "/ or " + kTimeDir + "/ in the working directory");
  }

  ms::Model model;
  if (!BuildModel(mindir_path, FLAGS_device_id, &model, &error)) {
    return Fail(error);
  }
  const std::vector<ms::MSTensor> model_inputs = model.GetInputs();
  if (!CheckModelInput(model_inputs, &error)) {
    return Fail(error);
  }

  // CPU preprocessing; Resize is bilinear like cv2.INTER_LINEAR in the Python pipeline.
  auto decode = std::make_shared<ds::vision::Decode>();
  auto resize = std::make_shared<ds::vision::Resize>(std::vector<int32_t>{FLAGS_image_height, FLAGS_image_width});
  auto normalize = std::make_shared<ds::vision::Normalize>(kMean, kStd);
  auto hwc2chw = std::make_shared<ds::vision::HWC2CHW>();
  ds::Execute preprocess(std::vector<std::shared_ptr<ds::TensorTransform>>{decode, resize, normalize, hwc2chw});

  double total_ms = 0.0;
  for (size_t index = 0; index < images.size(); ++index) {
    if (!InferImage(images[index], model_inputs[0], &preprocess, &model, &total_ms, &error)) {
      return Fail(error);
    }
    std::cout << "[" << (index + 1) << "/" << images.size() << "] " << images[index] << std::endl;
  }
  if (!WriteTimeFile(total_ms / static_cast<double>(images.size()), images.size())) {
    return Fail(std::string("cannot write ") + kTimeFile);
  }
  return 0;
}
