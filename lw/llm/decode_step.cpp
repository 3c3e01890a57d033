// One decoding step's attention for grouped-query models on a CPU, bf16 (lw.llm.cpu_kernel).
//
// Why: at a decoding step torch multiplies the engine's cached keys and values (each row's a
// view of a larger buffer) only after copying them contiguous, and its product for a few query
// heads against thousands of positions runs far below the memory's speed; at 16 rows x 2,000
// cached tokens attention was most of a SmolLM2-135M step. This reads each (row, key/value head)
// slice where it lies, once for all the query heads that share it, skips the left padding the
// engine puts before shorter rows, and spreads the slices over torch's own threads.
//
// Arithmetic as lw.llm.attention._matmul_step's: bf16 inputs, products summed in fp32, scores
// rounded to bf16, softmax in fp32, probabilities rounded to bf16, the output rounded to bf16.
// Only the order of the fp32 sums differs (tests/test_cpu_kernel.py bounds the difference).
// Needs AVX2 and FMA (every x86-64 CPU the kit has met); the loader checks before building.
//
// Also here, the linear layers of a decoding step (``rows_linear``): a bf16 product of a few
// rows (the batch) by a weight laid out once (``pack_rows``). oneDNN's bf16 product read the
// weights at ~9-11 GB/s for 1-16 rows where these cores read memory at ~39 GB/s; laid out for
// AVX-512 BF16's pair-wise dot product (vdpbf16ps), each weight vector loaded feeds every row,
// sums in fp32, one rounding to bf16 at the end, as oneDNN's (only the order of the sums
// differs). Compiled for that instruction set by function attribute and run only where the CPU
// has it (``bf16_dot``): the rest of this file still needs AVX2 alone.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <algorithm>
#include <array>
#include <utility>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace lwk {

inline __m256 load8(const uint16_t* p) {  // 8 bf16 -> 8 fp32 (exact)
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  return _mm_cvtss_f32(_mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1)));
}

inline __m256 hsum8(const __m256* a) {  // lane p = sum of a[p]'s lanes
  __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  t0 = _mm256_hadd_ps(t0, t1);
  t2 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20), _mm256_permute2f128_ps(t0, t2, 0x31));
}

inline __m256 round8(__m256 x) {  // to the nearest bf16, ties to even (finite inputs)
  __m256i u = _mm256_castps_si256(x);
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  u = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
  return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

inline uint16_t to_bf16(float f) {  // round to nearest even, as torch's .to(torch.bfloat16)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// e^x for x <= 0 (a score minus the row's maximum), 0 below -87 and for -inf.
inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f);
  const __m256 zero = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln 2 in two parts
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);  // Taylor series to r^7: |r| <= ln2 / 2
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(zero, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

struct Step {
  const uint16_t *q, *k, *v;  // q [B, H, G, D] contiguous; k, v [B, H, L, D], unit stride in D
  const bool* mask;           // [B, L] or null
  uint16_t* out;              // [B, H, G, D]
  int64_t B, H, G, L, ks0, ks1, ks2, vs0, vs1, vs2;
};

constexpr int64_t BLOCK = 64;  // positions converted to fp32 at a time (16 KB at D = 64)

// Items [begin, end) of B * H (row, key/value head); J = D / 8.
template <int J>
void attend(const Step& S, int64_t begin, int64_t end) {
  constexpr int64_t D = 8 * J;
  const int64_t G = S.G, L = S.L, H = S.H;
  const int64_t LP = (L + 7) / 8 * 8;
  std::vector<float> s(G * LP), acc(G * D), qf(G * D), blk(BLOCK * D);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / H, h = item % H;
    const bool* m = S.mask ? S.mask + b * L : nullptr;
    // the attended span [lo, hi): left padding (the engine's case) is skipped, not computed
    int64_t lo = 0, hi = L;
    if (m) {
      while (lo < L && !m[lo]) ++lo;
      while (hi > lo && !m[hi - 1]) --hi;
    }
    lo = lo / 8 * 8;
    const int64_t hp = (hi + 7) / 8 * 8;
    for (int64_t i = 0; i < G * D; i += 8) _mm256_storeu_ps(&qf[i], load8(S.q + item * G * D + i));
    const uint16_t* kb = S.k + b * S.ks0 + h * S.ks1;
    const uint16_t* vb = S.v + b * S.vs0 + h * S.vs1;
    // scores: a block of keys to fp32 once, then every query head of the group
    for (int64_t l0 = lo; l0 < hp; l0 += BLOCK) {
      const int64_t n = std::min(BLOCK, hp - l0);
      for (int64_t p = 0; p < n; ++p) {
        float* dst = &blk[p * D];
        if (l0 + p < L) {
          const uint16_t* src = kb + (l0 + p) * S.ks2;
          const char* ahead = reinterpret_cast<const char*>(src + BLOCK * S.ks2);
          for (int c = 0; c < 2 * J; c += 4) _mm_prefetch(ahead + 16 * c, _MM_HINT_T0);
          for (int j = 0; j < J; ++j) _mm256_storeu_ps(dst + 8 * j, load8(src + 8 * j));
        } else {
          std::fill(dst, dst + D, 0.0f);
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        const float* qg = &qf[g * D];
        for (int64_t p = 0; p < n; p += 8) {
          __m256 a[8];
          for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
          for (int j = 0; j < J; ++j) {
            const __m256 qj = _mm256_loadu_ps(qg + 8 * j);
            for (int i = 0; i < 8; ++i)
              a[i] = _mm256_fmadd_ps(qj, _mm256_loadu_ps(&blk[(p + i) * D + 8 * j]), a[i]);
          }
          _mm256_storeu_ps(&s[g * LP + l0 + p], round8(hsum8(a)));  // bf16 scores, as torch's
        }
      }
    }
    // softmax in fp32 over the attended positions; probabilities rounded to bf16
    for (int64_t g = 0; g < G; ++g) {
      float* sg = &s[g * LP];
      for (int64_t l = hi; l < hp; ++l) sg[l] = -INFINITY;
      if (m)
        for (int64_t l = lo; l < hi; ++l)
          if (!m[l]) sg[l] = -INFINITY;
      __m256 vmx = _mm256_set1_ps(-INFINITY);
      for (int64_t l = lo; l < hp; l += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(sg + l));
      float t[8];
      _mm256_storeu_ps(t, vmx);
      const float mx = *std::max_element(t, t + 8);
      vmx = _mm256_set1_ps(mx);
      __m256 vsum = _mm256_setzero_ps();
      for (int64_t l = lo; l < hp; l += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sg + l), vmx));
        _mm256_storeu_ps(sg + l, e);
        vsum = _mm256_add_ps(vsum, e);
      }
      const float sum = hsum(vsum);
      const __m256 inv = _mm256_set1_ps(sum > 0 ? 1.0f / sum : 0.0f);
      for (int64_t l = lo; l < hp; l += 8)
        _mm256_storeu_ps(sg + l, round8(_mm256_mul_ps(_mm256_loadu_ps(sg + l), inv)));
    }
    // probabilities times values: a block of values to fp32 once, then every query head
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t l0 = lo; l0 < hi; l0 += BLOCK) {
      const int64_t n = std::min(BLOCK, hi - l0);
      for (int64_t p = 0; p < n; ++p) {
        const uint16_t* src = vb + (l0 + p) * S.vs2;
        const char* ahead = reinterpret_cast<const char*>(src + BLOCK * S.vs2);
        for (int c = 0; c < 2 * J; c += 4) _mm_prefetch(ahead + 16 * c, _MM_HINT_T0);
        for (int j = 0; j < J; ++j) _mm256_storeu_ps(&blk[p * D + 8 * j], load8(src + 8 * j));
      }
      for (int64_t g = 0; g < G; ++g) {
        const float* pg = &s[g * LP + l0];
        for (int j0 = 0; j0 < J; j0 += 4) {
          __m256 a[4];
          for (int i = 0; i < 4; ++i) a[i] = _mm256_loadu_ps(&acc[g * D + 8 * (j0 + i)]);
          for (int64_t p = 0; p < n; ++p) {
            const __m256 w = _mm256_broadcast_ss(pg + p);
            const float* row = &blk[p * D + 8 * j0];
            for (int i = 0; i < 4; ++i) a[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * i), a[i]);
          }
          for (int i = 0; i < 4; ++i) _mm256_storeu_ps(&acc[g * D + 8 * (j0 + i)], a[i]);
        }
      }
    }
    uint16_t* o = S.out + item * G * D;
    for (int64_t i = 0; i < G * D; ++i) o[i] = to_bf16(acc[i]);
  }
}

// ---- few-row bf16 linear layers (AVX-512 BF16) ----------------------------------------------
// Packed weight: [N / 16, K / 2, 16, 2] bf16, i.e. for each block of 16 outputs, K / 2 vectors
// holding those outputs' weights for inputs 2k and 2k + 1, the pairs vdpbf16ps multiplies.
// A tile computes MT rows x 32 outputs (two blocks): each broadcast input pair feeds two
// products, 2 x MT fp32 accumulators (at most 24 of the 32 vector registers).
constexpr int MAX_TILE_ROWS = 12;
using TileFn = void (*)(const uint16_t*, int64_t, const uint16_t*, int64_t, int, const float*,
                        uint16_t*, int64_t);

template <int MT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
void rows_tile(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t pairs, int blocks,
               const float* bias, uint16_t* y, int64_t ldy) {
  __m512 acc[MT][2];
  const uint16_t* w1 = w + pairs * 32;  // the second block (unused where blocks == 1)
  for (int m = 0; m < MT; ++m)
    for (int j = 0; j < 2; ++j)
      acc[m][j] = bias && j < blocks ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps();
  const uint32_t* xp = reinterpret_cast<const uint32_t*>(x);  // input pairs as 32-bit words
  const int64_t ld = ldx / 2;
  if (blocks == 2) {
    for (int64_t k = 0; k < pairs; ++k) {
      const __m512i a = _mm512_loadu_si512(w + k * 32), b = _mm512_loadu_si512(w1 + k * 32);
#pragma GCC unroll 12
      for (int m = 0; m < MT; ++m) {
        const __m512i r = _mm512_set1_epi32(static_cast<int>(xp[m * ld + k]));
        acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)a, (__m512bh)r);
        acc[m][1] = _mm512_dpbf16_ps(acc[m][1], (__m512bh)b, (__m512bh)r);
      }
    }
  } else {
    for (int64_t k = 0; k < pairs; ++k) {
      const __m512i a = _mm512_loadu_si512(w + k * 32);
#pragma GCC unroll 12
      for (int m = 0; m < MT; ++m) {
        const __m512i r = _mm512_set1_epi32(static_cast<int>(xp[m * ld + k]));
        acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)a, (__m512bh)r);
      }
    }
  }
  for (int m = 0; m < MT; ++m)  // vcvtneps2bf16: round to nearest even, as torch's .to(bf16)
    for (int j = 0; j < blocks; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + m * ldy + 16 * j),
                          (__m256i)_mm512_cvtneps_pbh(acc[m][j]));
}

template <int... I>
constexpr std::array<TileFn, sizeof...(I)> tiles(std::integer_sequence<int, I...>) {
  return {rows_tile<I + 1>...};
}
const auto TILES = tiles(std::make_integer_sequence<int, MAX_TILE_ROWS>{});


// ---- sampling: one pass per step over every row's logits -----------------------------------
// lw.llm.engine.sample's arithmetic for rows with top_p == 1, per row on torch's threads: the
// repetition penalty (seen tokens' logits divided by it if positive, else multiplied), end
// tokens blocked before min_new_tokens, the greedy argmax (first of equal maxima), and for
// temperature > 0 softmax(logits / T) in fp32, its cumulative sums in double rounded to fp32
// (as torch's cumsum), and the first index whose sum exceeds u x total (searchsorted, right).
// torch ran that as ~12 full-vocabulary tensor operations, each allocating its output: ~15-30 ms
// a step at 16 rows x 49,152 tokens on 2 cores, as long as the model's step. Only exp and the
// order of the softmax's fp32 sum differ from torch's, so a draw differs only where u falls
// within rounding of a boundary between two tokens.
int64_t sample_row(const float* logits, const bool* seen, int64_t V, float penalty, float temp,
                   bool blocked, const int64_t* eos, int64_t n_eos, double u, float* buf) {
  for (int64_t i = 0; i < V; ++i) {
    float x = logits[i];
    if (penalty != 1.0f && seen[i]) x = x > 0 ? x / penalty : x * penalty;
    buf[i] = x;
  }
  if (blocked)
    for (int64_t e = 0; e < n_eos; ++e)
      if (eos[e] >= 0 && eos[e] < V) buf[eos[e]] = -INFINITY;
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (buf[i] > buf[best]) best = i;
  if (!(temp > 0)) return best;
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) {
    buf[i] = buf[i] / temp;
    mx = std::max(mx, buf[i]);
  }
  const int64_t V8 = V / 8 * 8;
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t i = 0; i < V8; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(buf + i), vmx));
    _mm256_storeu_ps(buf + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (int64_t i = V8; i < V; ++i) {
    __m256 e = exp8(_mm256_set1_ps(buf[i] - mx));
    buf[i] = _mm_cvtss_f32(_mm256_castps256_ps128(e));
    sum += buf[i];
  }
  const float inv = 1.0f / sum;
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    buf[i] *= inv;
    total += buf[i];
  }
  const float target = static_cast<float>(u * static_cast<double>(static_cast<float>(total)));
  double acc = 0;
  for (int64_t i = 0; i < V; ++i) {
    acc += buf[i];
    if (static_cast<float>(acc) > target) return i;
  }
  return V - 1;
}

}  // namespace lwk

// logits [n, V] fp32 contiguous; seen [N, V] bool contiguous, row k's being seen[rows[k]];
// penalty, temperature [n] fp32; blocked [n] bool; eos [E] int64; u [n] float64 uniforms.
// Returns [n] int64 tokens (see sample_row).
torch::Tensor sample_step(torch::Tensor logits, torch::Tensor seen, torch::Tensor rows,
                          torch::Tensor penalty, torch::Tensor temperature, torch::Tensor blocked,
                          torch::Tensor eos, torch::Tensor u) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.dim() == 2 && logits.is_contiguous(),
              "sample_step: logits [n, V] fp32 contiguous");
  const int64_t n = logits.size(0), V = logits.size(1);
  TORCH_CHECK(seen.scalar_type() == at::kBool && seen.dim() == 2 && seen.size(1) == V &&
              seen.is_contiguous(), "sample_step: seen [N, V] bool contiguous");
  TORCH_CHECK(rows.scalar_type() == at::kLong && rows.numel() == n &&
              penalty.scalar_type() == at::kFloat && penalty.numel() == n &&
              temperature.scalar_type() == at::kFloat && temperature.numel() == n &&
              blocked.scalar_type() == at::kBool && blocked.numel() == n &&
              eos.scalar_type() == at::kLong && u.scalar_type() == at::kDouble &&
              u.numel() == n, "sample_step: per-row settings of the wrong type or length");
  rows = rows.contiguous();
  const int64_t* rp = rows.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k)
    TORCH_CHECK(rp[k] >= 0 && rp[k] < seen.size(0), "sample_step: row index out of range");
  penalty = penalty.contiguous(); temperature = temperature.contiguous();
  blocked = blocked.contiguous(); eos = eos.contiguous(); u = u.contiguous();
  auto out = torch::empty({n}, logits.options().dtype(at::kLong));
  const float* lp = logits.data_ptr<float>();
  const bool* sp = seen.data_ptr<bool>();
  int64_t* op = out.data_ptr<int64_t>();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(V);
    for (int64_t k = begin; k < end; ++k)
      op[k] = lwk::sample_row(lp + k * V, sp + rp[k] * V, V, penalty.data_ptr<float>()[k],
                              temperature.data_ptr<float>()[k], blocked.data_ptr<bool>()[k],
                              eos.data_ptr<int64_t>(), eos.numel(), u.data_ptr<double>()[k],
                              buf.data());
  });
  return out;
}

bool bf16_dot() {  // whether this CPU runs rows_linear (AVX-512 with its BF16 dot product)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

// weight [N, K] bf16, N a multiple of 16, K even -> [N / 16, K / 2, 32] (see rows_tile)
torch::Tensor pack_rows(torch::Tensor weight) {
  TORCH_CHECK(weight.scalar_type() == at::kBFloat16 && weight.dim() == 2,
              "pack_rows: a 2-d bf16 weight");
  const int64_t n = weight.size(0), k = weight.size(1);
  TORCH_CHECK(n % 16 == 0 && k % 2 == 0, "pack_rows: outputs a multiple of 16, inputs even");
  return weight.contiguous().view({n / 16, 16, k / 2, 2}).permute({0, 2, 1, 3}).contiguous()
      .view({n / 16, k / 2, 32});
}

// x [M, K] bf16 with unit stride along K; packed from pack_rows; bias [N] or empty.
// Returns x @ weight^T + bias, [M, N] bf16.
torch::Tensor rows_linear(torch::Tensor x, torch::Tensor packed, torch::Tensor bias) {
  TORCH_CHECK(bf16_dot(), "rows_linear: this CPU lacks AVX-512 BF16");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && packed.scalar_type() == at::kBFloat16 &&
              x.dim() == 2 && packed.dim() == 3 && packed.size(2) == 32 &&
              packed.is_contiguous(), "rows_linear: bf16 x [M, K] and a pack_rows weight");
  const int64_t M = x.size(0), K = x.size(1), NB = packed.size(0), pairs = packed.size(1);
  TORCH_CHECK(pairs * 2 == K, "rows_linear: x has ", K, " inputs, the weight ", pairs * 2);
  if (x.stride(1) != 1 || x.stride(0) % 2) x = x.contiguous();
  auto y = torch::empty({M, NB * 16}, x.options());
  torch::Tensor b32;
  if (bias.numel()) {
    TORCH_CHECK(bias.numel() == NB * 16, "rows_linear: bias of ", bias.numel(), " for ",
                NB * 16, " outputs");
    b32 = bias.to(at::kFloat).contiguous();
  }
  const float* bp = bias.numel() ? b32.data_ptr<float>() : nullptr;
  const auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr());
  const auto* wp = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr());
  const int64_t ldx = x.stride(0), ldy = y.stride(0);
  // rows split evenly into tiles of at most MAX_TILE_ROWS (16 rows: two of 8); all tiles of a
  // pair of blocks run back to back, so its weights come from memory once, then from cache
  const int64_t n_tiles = (M + lwk::MAX_TILE_ROWS - 1) / lwk::MAX_TILE_ROWS;
  const int64_t per = (M + n_tiles - 1) / n_tiles;
  at::parallel_for(0, (NB + 1) / 2, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t nb = 2 * i;
      const int blocks = nb + 1 < NB ? 2 : 1;
      for (int64_t m0 = 0; m0 < M; m0 += per) {
        const int mt = static_cast<int>(std::min(per, M - m0));
        lwk::TILES[mt - 1](xp + m0 * ldx, ldx, wp + nb * pairs * 32, pairs, blocks,
                           bp ? bp + nb * 16 : nullptr, yp + m0 * ldy + nb * 16, ldy);
      }
    }
  });
  return y;
}

// q [B, H, G, D] bf16 contiguous, already scaled; k, v [B, H, L, D] bf16, unit stride along D
// (any other strides); mask [B, L] bool contiguous (true: attend) or empty. Returns [B, H, G, D].
torch::Tensor decode_step(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor mask) {
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 && k.scalar_type() == at::kBFloat16 &&
              v.scalar_type() == at::kBFloat16, "decode_step: bf16 tensors only");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "decode_step: 4-d tensors");
  TORCH_CHECK(q.is_contiguous() && k.stride(3) == 1 && v.stride(3) == 1,
              "decode_step: q contiguous, k and v with unit stride along the head dimension");
  const int64_t B = q.size(0), H = q.size(1), G = q.size(2), D = q.size(3), L = k.size(2);
  TORCH_CHECK(D == 64 || D == 128, "decode_step: head dimension 64 or 128");
  TORCH_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D && v.sizes() == k.sizes(),
              "decode_step: q, k and v shapes disagree");
  const bool masked = mask.numel() > 0;
  TORCH_CHECK(!masked || (mask.scalar_type() == at::kBool && mask.is_contiguous() &&
                          mask.dim() == 2 && mask.size(0) == B && mask.size(1) == L),
              "decode_step: mask [B, L] bool contiguous");
  auto out = torch::empty_like(q);
  const lwk::Step step{reinterpret_cast<const uint16_t*>(q.data_ptr()),
                       reinterpret_cast<const uint16_t*>(k.data_ptr()),
                       reinterpret_cast<const uint16_t*>(v.data_ptr()),
                       masked ? mask.data_ptr<bool>() : nullptr,
                       reinterpret_cast<uint16_t*>(out.data_ptr()),
                       B, H, G, L, k.stride(0), k.stride(1), k.stride(2),
                       v.stride(0), v.stride(1), v.stride(2)};
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    if (D == 64)
      lwk::attend<8>(step, begin, end);
    else
      lwk::attend<16>(step, begin, end);
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_step", &decode_step, "one decoding step's grouped-query attention, bf16");
  m.def("bf16_dot", &bf16_dot, "whether this CPU runs rows_linear (AVX-512 BF16)");
  m.def("pack_rows", &pack_rows, "a bf16 weight [N, K] laid out for rows_linear");
  m.def("rows_linear", &rows_linear, "x [M, K] times a pack_rows weight, plus bias, bf16");
  m.def("sample_step", &sample_step, "one token per row: penalty, temperature, inverse-CDF draw");
}
