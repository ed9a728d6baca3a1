// blackwheel verify test kernel: 64 live floats; with -maxrregcount=32 ptxas spills to the stack.
__global__ void bw_spill(const float* __restrict__ x, float* __restrict__ y, int n) {
  float acc[64];
  #pragma unroll
  for (int k = 0; k < 64; ++k) acc[k] = x[threadIdx.x + k * n];
  #pragma unroll
  for (int r = 0; r < 8; ++r) {
    #pragma unroll
    for (int k = 0; k < 64; ++k) acc[k] = acc[k] * acc[(k + r + 1) & 63] + acc[(k * 3 + r) & 63];
  }
  float s = 0.f;
  #pragma unroll
  for (int k = 0; k < 64; ++k) s += acc[k] * (float)k;
  y[threadIdx.x] = s;
}
