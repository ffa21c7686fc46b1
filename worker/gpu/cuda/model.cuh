// The resident model of the CUDA plugin (model_* entry points of gpu_api.h): one object per
// loaded model holding every linear module's variants as bf16 on the device, the evaluation
// set, the prefix cache and the scratch buffers. Implemented in model.cu; plugin_api.cu puts
// these functions into the ImpqGpuApi table. Signatures and semantics: gpu_api.h.
#ifndef IMPQ_WORKER_GPU_CUDA_MODEL_CUH_
#define IMPQ_WORKER_GPU_CUDA_MODEL_CUH_

#include "worker/gpu/gpu_api.h"

namespace impq::gpu {

int ModelCreate(int device, const ImpqGpuModelDesc* desc, ImpqGpuModel** out,
                ImpqGpuError* err);
void ModelDestroy(ImpqGpuModel* model);
int ModelSetLinearPacked(ImpqGpuModel* model, int layer, int kind, int bits, int64_t group,
                         const uint8_t* packed, const float* scales, const float* zeros,
                         ImpqGpuError* err);
int ModelSetLinearF32(ImpqGpuModel* model, int layer, int kind, const float* w,
                      ImpqGpuError* err);
int ModelSetLinearRtn(ImpqGpuModel* model, int layer, int kind, const float* w, int64_t group,
                      int keep_full, ImpqGpuError* err);
int ModelSetLinearRtnWidths(ImpqGpuModel* model, int layer, int kind, const float* w,
                            int64_t group, unsigned widths_mask, int keep_full,
                            ImpqGpuError* err);
int ModelSetEval(ImpqGpuModel* model, const int32_t* tokens, const int64_t* offsets,
                 int64_t n_seqs, const int64_t* score_begin, int64_t max_cache_bytes,
                 ImpqGpuError* err);
int ModelEvaluate(ImpqGpuModel* model, const uint8_t* variants, double* seq_nll,
                  ImpqGpuError* err);
int ModelStats(ImpqGpuModel* model, ImpqGpuEvalStats* stats, ImpqGpuError* err);

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_MODEL_CUH_
