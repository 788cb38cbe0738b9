// Host emulation of the prelude's PTX section (see emulator.h).
namespace tl {

inline void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  tl_emu::Pending p{smem, {}};
  if (src_bytes) std::memcpy(p.data, gmem, 16);
  if ((*tl_emu::rng)() & 1) std::memcpy(smem, p.data, 16);  // lands at once
  else tl_emu::groups->back().push_back(p);                 // lands at the wait
}
inline void cp_async_commit() { tl_emu::groups->emplace_back(); }
template <int n> inline void cp_async_wait() {
  auto& g = *tl_emu::groups;
  while ((int)g.size() > n + 1) {  // the last entry is the group still being filled
    for (auto& p : g.front()) std::memcpy(p.dst, p.data, 16);
    g.erase(g.begin());
  }
}

// ldmatrix: lane l gives the address of row l % 8 of matrix l / 8; without .trans lane l receives
// row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of each matrix; with .trans, column l / 4 of rows
// 2 (l % 4) and 2 (l % 4) + 1.
template <int N, bool trans>
inline void tl_emu_ldmatrix(unsigned* r, const void* smem) {
  using namespace tl_emu;
  int w = thread_idx.x / 32, l = lane();
  block->addr[w][l] = smem;
  warp_bar().arrive_and_wait();
  for (int j = 0; j < N; ++j) {
    uint16_t e[2];
    for (int h = 0; h < 2; ++h) {
      const uint16_t* row = trans ? (const uint16_t*)block->addr[w][8 * j + 2 * (l % 4) + h]
                                  : (const uint16_t*)block->addr[w][8 * j + l / 4];
      e[h] = trans ? row[l / 4] : row[2 * (l % 4) + h];
    }
    r[j] = (unsigned)e[0] | ((unsigned)e[1] << 16);
  }
  warp_bar().arrive_and_wait();
}
inline void ldmatrix_x4(unsigned int (&r)[4], const void* p) { tl_emu_ldmatrix<4, false>(r, p); }
inline void ldmatrix_x4_trans(unsigned int (&r)[4], const void* p) { tl_emu_ldmatrix<4, true>(r, p); }
inline void ldmatrix_x2(unsigned int (&r)[2], const void* p) { tl_emu_ldmatrix<2, false>(r, p); }
inline void ldmatrix_x2_trans(unsigned int (&r)[2], const void* p) { tl_emu_ldmatrix<2, true>(r, p); }

// mma.m16n8k16, g = lane / 4, t = lane % 4:
//   A (16x16): reg i holds rows g + 8 (i % 2), columns 2t + 8 (i / 2) + {0, 1}
//   B (16x8):  reg i holds rows 2t + 8 i + {0, 1}, column g
//   C/D (16x8): d0, d1 at row g, columns 2t + {0, 1}; d2, d3 at row g + 8
template <typename T> inline float tl_emu_elem(unsigned reg, int h);
template <> inline float tl_emu_elem<__half>(unsigned reg, int h) { return tl_emu_half_to_float((uint16_t)(reg >> (16 * h))); }
template <> inline float tl_emu_elem<__nv_bfloat16>(unsigned reg, int h) { return __uint_as_float((reg >> (16 * h)) << 16); }

template <typename T>
inline void mma_16816(float* d, const unsigned* a, const unsigned* b) {
  using namespace tl_emu;
  int w = thread_idx.x / 32, l = lane();
  for (int i = 0; i < 4; ++i) block->frag[w][l][i] = a[i];
  for (int i = 0; i < 2; ++i) block->frag[w][l][4 + i] = b[i];
  warp_bar().arrive_and_wait();
  auto A = [&](int r, int k) {
    int src = (r % 8) * 4 + (k % 8) / 2;
    return tl_emu_elem<T>(block->frag[w][src][(r / 8) + 2 * (k / 8)], k % 2);
  };
  auto B = [&](int k, int n) {
    int src = n * 4 + (k % 8) / 2;
    return tl_emu_elem<T>(block->frag[w][src][4 + k / 8], k % 2);
  };
  for (int i = 0; i < 4; ++i) {
    int r = l / 4 + 8 * (i / 2), n = 2 * (l % 4) + (i % 2);
    float s = d[i];
    for (int k = 0; k < 16; ++k) s += A(r, k) * B(k, n);
    d[i] = s;
  }
  warp_bar().arrive_and_wait();
}

}  // namespace tl
