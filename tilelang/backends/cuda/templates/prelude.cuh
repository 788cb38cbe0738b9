// ---- tilelang prelude: headers (only those of the element types the kernel uses: they are slow to compile)
#if TL_F16
#include <cuda_fp16.h>
#endif
#if TL_BF16
#include <cuda_bf16.h>
#endif
#if TL_F8
#include <cuda_fp8.h>
#endif
// ---- tilelang prelude: helpers (conversions, reductions, packed integers, vectors)

namespace tl {

// -- element conversions: every float is computed in f32 and rounded to its dtype after each op
template <typename T> __device__ __forceinline__ T from_f32(float x);
#if TL_F16
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
#endif
#if TL_BF16
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
#endif
#if TL_F8
// out-of-range values become NaN (e4m3) or inf (e5m2), as ml_dtypes converts them
__device__ __forceinline__ float to_f32(__nv_fp8_e4m3 x) { return float(x); }
__device__ __forceinline__ float to_f32(__nv_fp8_e5m2 x) { return float(x); }
template <> __device__ __forceinline__ __nv_fp8_e4m3 from_f32<__nv_fp8_e4m3>(float x) {
  __nv_fp8_e4m3 r; r.__x = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3); return r;
}
template <> __device__ __forceinline__ __nv_fp8_e5m2 from_f32<__nv_fp8_e5m2>(float x) {
  __nv_fp8_e5m2 r; r.__x = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2); return r;
}
#endif
template <typename T> __device__ __forceinline__ float round_to(float x) { return to_f32(from_f32<T>(x)); }

__device__ __forceinline__ float inf_f32() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fffffff); }

// float -> integer: truncate toward zero, saturate, NaN -> 0
__device__ __forceinline__ long long f2i_sat(float x, long long lo, long long hi) {
  if (x != x) return 0;
  if (x <= (float)lo) return lo;
  if (x >= (float)hi) return hi;
  return (long long)truncf(x);
}

// integer ceil division with C (truncating) operands, like Python's -((-a) // b)
__device__ __forceinline__ long long cdiv(long long a, long long b) {
  long long q = a / b;
  return (a % b != 0 && ((a > 0) == (b > 0))) ? q + 1 : q;
}
__device__ __forceinline__ bool in_range(long long x, long long n) { return x >= 0 && x < n; }
__device__ __forceinline__ long long min_ll(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long max_ll(long long a, long long b) { return a > b ? a : b; }

// the reference interpreter's elementwise functions, in f32
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x / 1.41421354f)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.797884583f * (x + 0.0447149985f * x * x * x)));
}

// combine steps of reductions
struct Sum { template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; } };
struct Max {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ __forceinline__ long long operator()(long long a, long long b) const { return a > b ? a : b; }
};
struct Min {
  __device__ __forceinline__ float operator()(float a, float b) const { return fminf(a, b); }
  __device__ __forceinline__ long long operator()(long long a, long long b) const { return a < b ? a : b; }
};

// butterfly all-reduce over aligned groups of `width` lanes (a power of two <= 32)
template <int width, typename T, typename Op>
__device__ __forceinline__ T group_allreduce(T x, Op op) {
#pragma unroll
  for (int m = width / 2; m > 0; m /= 2) x = op(x, __shfl_xor_sync(0xffffffffu, x, m));
  return x;
}

// -- bit-packed integers: element `col` of an LSB-first row of `bits`-bit fields (may straddle bytes)
template <int bits, bool is_signed>
__device__ __forceinline__ long long load_packed(const unsigned char* row, long long col) {
  const long long bit = col * bits;
  const unsigned char* p = row + (bit >> 3);
  const int shift = (int)(bit & 7);
  unsigned int w = p[0];
  if (shift + bits > 8) w |= (unsigned int)p[1] << 8;
  unsigned int q = (w >> shift) & ((1u << bits) - 1u);
  if (is_signed) return (long long)(int)((q ^ (1u << (bits - 1))) - (1u << (bits - 1)));
  return (long long)q;
}
// The `bits`-bit field of `w` at `shift`, as a float, without I2F: the field is or-ed into the
// mantissa of 2^23 (one lop3 with the mask; prmt for bytes) and 2^23 subtracted.  Signed
// fields flip their sign bit first, which offsets them by 2^(bits-1): subtracted too.
template <int bits, bool is_signed>
__device__ __forceinline__ float field_to_f32(unsigned int w, int shift) {
  constexpr unsigned int half = 1u << (bits - 1);
  unsigned int m;
  if (bits == 8) {
    m = __byte_perm(is_signed ? w ^ 0x80808080u : w, 0x4b000000u, 0x7650u | (unsigned int)(shift >> 3));
  } else {
    m = (((is_signed ? w ^ (half << shift) : w) >> shift) & ((1u << bits) - 1u)) | 0x4b000000u;
  }
  return __uint_as_float(m) - (is_signed ? 8388608.0f + (float)half : 8388608.0f);
}

// -- vectors of N elements for wide global/shared accesses
template <typename T, int N> struct alignas(sizeof(T) * N >= 16 ? 16 : sizeof(T) * N) Vec { T v[N]; };
__device__ __forceinline__ bool aligned_to(const void* p, unsigned int bytes) {
  return ((unsigned long long)p & (bytes - 1)) == 0;
}

}  // namespace tl
// ---- tilelang prelude: PTX (cp.async, ldmatrix, mma)
namespace tl {

// -- asynchronous copies (sm_80+): 16 bytes global -> shared; src_bytes = 0 zero-fills
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int n> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(n) : "memory"); }

// -- tensor-core fragments
__device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], const void* smem) {
  unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned int (&r)[4], const void* smem) {
  unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x2(unsigned int (&r)[2], const void* smem) {
  unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x2_trans(unsigned int (&r)[2], const void* smem) {
  unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}
// d += a @ b for one m16n8k16 tile; T is __half or __nv_bfloat16
template <typename T>
__device__ __forceinline__ void mma_16816(float* d, const unsigned int* a, const unsigned int* b);
#if TL_F16
template <>
__device__ __forceinline__ void mma_16816<__half>(float* d, const unsigned int* a, const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
#if TL_BF16
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float* d, const unsigned int* a, const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

}  // namespace tl
// ---- end of tilelang prelude
