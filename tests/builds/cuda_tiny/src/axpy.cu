// Tiny CUDA translation unit for the compiler-cache tests (seconds to compile).
#include "tiny.h"

__global__ void axpy_kernel(float a, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

void tiny_axpy(float a, const float* x, float* y, int n, cudaStream_t s) {
  axpy_kernel<<<(n + 255) / 256, 256, 0, s>>>(a, x, y, n);
}
