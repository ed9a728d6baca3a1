// blackwheel verify test kernel: two small kernels (one with 16 KiB static smem) and a host launcher.
#include <cuda_runtime.h>
__global__ void bw_axpy(float a, const float* __restrict__ x, float* __restrict__ y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
__global__ void bw_smem_reduce(const float* __restrict__ x, float* __restrict__ out, int n) {
  __shared__ float buf[4096];
  int t = threadIdx.x;
  buf[t] = (t < n) ? x[t] : 0.f;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) { if (t < s) buf[t] += buf[t + s]; __syncthreads(); }
  if (t == 0) out[blockIdx.x] = buf[0];
}
extern "C" int bw_launch(float a, const float* x, float* y, int n) {
  bw_axpy<<<(n + 255) / 256, 256>>>(a, x, y, n);
  return (int)cudaGetLastError();
}
