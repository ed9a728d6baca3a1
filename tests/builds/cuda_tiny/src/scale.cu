// Second tiny CUDA translation unit (a template, so cicc has a little work).
#include "tiny.h"

template <typename T>
__global__ void scale_kernel(T* y, T a, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] = y[i] * a;
}

void tiny_scale(float* y, float a, int n, cudaStream_t s) {
  scale_kernel<float><<<32, 256, 0, s>>>(y, a, n);
}
