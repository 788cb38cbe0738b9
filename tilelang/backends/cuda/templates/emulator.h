// Host emulation of the CUDA features generated kernels use, for testing without a GPU.
// One std::thread per CUDA thread, run concurrently: __syncthreads is a std::barrier over the
// block, warp collectives (shuffles, ldmatrix, mma) exchange values through per-warp buffers
// between two warp barriers.  The fragment layouts follow the PTX ISA tables for
// ldmatrix.m8n8 and mma.m16n8k16 (written independently of the code generator).
// cp.async copies land either at once or only at the matching wait_group, chosen at random,
// so both early and late arrival are exercised.
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct tl_dim3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

namespace tl_emu {
struct Block {
  int threads;
  std::barrier<>* all;
  std::vector<std::barrier<>*> warps;
  unsigned char* smem;
  unsigned long long xchg[32][32];
  const void* addr[32][32];
  unsigned frag[32][32][10];
  float acc[32][32][4];
};
inline thread_local Block* block = nullptr;
inline thread_local tl_dim3 thread_idx, block_idx;
inline thread_local std::mt19937* rng = nullptr;
struct Pending { void* dst; unsigned char data[16]; };
inline thread_local std::vector<std::vector<Pending>>* groups = nullptr;

inline int lane() { return thread_idx.x % 32; }
inline std::barrier<>& warp_bar() { return *block->warps[thread_idx.x / 32]; }
}  // namespace tl_emu

#define threadIdx tl_emu::thread_idx
#define blockIdx tl_emu::block_idx
inline void __syncthreads() { tl_emu::block->all->arrive_and_wait(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T x, int m) {
  using namespace tl_emu;
  int w = thread_idx.x / 32;
  std::memcpy(&block->xchg[w][lane()], &x, sizeof(T));
  warp_bar().arrive_and_wait();
  T r;
  std::memcpy(&r, &block->xchg[w][lane() ^ m], sizeof(T));
  warp_bar().arrive_and_wait();
  return r;
}

inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  unsigned long long v = ((unsigned long long)y << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }

// ---- narrow floats: storage structs and round-to-nearest-even conversions
struct __half { uint16_t x; };
struct __nv_bfloat16 { uint16_t x; };

inline float tl_emu_half_to_float(uint16_t h) {
  unsigned s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
  float v;
  if (e == 0) v = std::ldexp((float)m, -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = std::ldexp((float)(m | 1024), (int)e - 25);
  return s ? -v : v;
}
inline uint16_t tl_emu_float_to_half(float f) {
  unsigned u = __float_as_uint(f), s = (u >> 16) & 0x8000;
  if (std::isnan(f)) return (uint16_t)(s | 0x7e00);
  float a = std::fabs(f);
  if (a >= 65520.0f) return (uint16_t)(s | 0x7c00);
  if (a < std::ldexp(1.0f, -14)) {  // subnormal: multiples of 2^-24
    float q = std::nearbyint(a * 16777216.0f);  // default rounding mode: to nearest even
    return (uint16_t)(s | (unsigned)q);
  }
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  float scale = std::ldexp(1.0f, 11 - e);
  float q = std::nearbyint(a * scale);  // 11 significant bits
  if (q >= 2048.0f) { q /= 2; e += 1; }
  unsigned exp = (unsigned)(e - 1 + 15), man = (unsigned)q - 1024;
  if (exp >= 31) return (uint16_t)(s | 0x7c00);
  return (uint16_t)(s | (exp << 10) | man);
}
inline float __half2float(__half h) { return tl_emu_half_to_float(h.x); }
inline __half __float2half_rn(float f) { return __half{tl_emu_float_to_half(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  unsigned u = __float_as_uint(f);
  if (std::isnan(f)) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fff + ((u >> 16) & 1);
  return __nv_bfloat16{(uint16_t)(u >> 16)};
}

// fp8: decode by formula, encode by nearest search over the finite values (ties to even)
typedef unsigned char __nv_fp8_storage_t;
enum __nv_saturation_t { __NV_NOSAT, __NV_SATFINITE };
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
inline float tl_emu_fp8_decode(unsigned b, __nv_fp8_interpretation_t k) {
  int eb = k == __NV_E4M3 ? 4 : 5, mb = 7 - eb, bias = k == __NV_E4M3 ? 7 : 15;
  unsigned s = b >> 7, e = (b >> mb) & ((1u << eb) - 1), m = b & ((1u << mb) - 1);
  float v;
  if (k == __NV_E4M3 && e == 15 && m == 7) v = NAN;
  else if (k == __NV_E5M2 && e == 31) v = m ? NAN : INFINITY;
  else if (e == 0) v = std::ldexp((float)m, 1 - bias - mb);
  else v = std::ldexp((float)(m | (1u << mb)), (int)e - bias - mb);
  return s ? -v : v;
}
inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float f, __nv_saturation_t, __nv_fp8_interpretation_t k) {
  unsigned sign = std::signbit(f) ? 0x80 : 0;
  if (std::isnan(f)) return (unsigned char)(sign | 0x7f);
  float a = std::fabs(f), best = -1;
  unsigned bi = 0;
  float maxv = k == __NV_E4M3 ? 448.0f : 57344.0f, ulp = k == __NV_E4M3 ? 32.0f : 8192.0f;
  if (a >= maxv + ulp / 2) return (unsigned char)(sign | (k == __NV_E4M3 ? 0x7f : 0x7c));
  for (unsigned b = 0; b < 128; ++b) {
    float v = tl_emu_fp8_decode(b, k);
    if (!std::isfinite(v)) continue;
    float d = std::fabs(v - a);
    if (best < 0 || d < best || (d == best && (b & 1) == 0)) { best = d; bi = b; }
  }
  return (unsigned char)(sign | bi);
}
struct __nv_fp8_e4m3 { __nv_fp8_storage_t __x; operator float() const { return tl_emu_fp8_decode(__x, __NV_E4M3); } };
struct __nv_fp8_e5m2 { __nv_fp8_storage_t __x; operator float() const { return tl_emu_fp8_decode(__x, __NV_E5M2); } };
