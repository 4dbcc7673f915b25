// Accel-GCN's SpMM Y = A · X on the CPU (Xie et al., ICCAD 2023, arXiv:2308.11825), driven by the
// degree-sorted CSR and its block-level partition metadata (see cpu.py for the design notes).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

namespace {

// 16 fp32 lanes (one AVX-512 register, two AVX2 ones): gcc lowers the arithmetic to whatever
// -march=native offers.
typedef float vec16 __attribute__((vector_size(64)));
constexpr int64_t LANES = 16;

constexpr int64_t DEG_BOUND = 384;  // rows above it come as 384-nonzero chunks, one per block
constexpr int64_t ROW_COST = 2;     // the cost of writing one output row, in nonzeros
constexpr int64_t PREFETCH_AHEAD = 4;  // nonzeros between a prefetch of a row of x and its use
constexpr int64_t PARTS_PER_THREAD = 4;  // parts handed out dynamically (shared cores)
constexpr int64_t MIN_PARALLEL_WORK = int64_t(1) << 20;  // nonzeros × width run as one part

inline vec16 load16(const float* p) {
  vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline vec16 load16(const at::Half* p) {
#if defined(__AVX512F__)
  return (vec16)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__F16C__)
  const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  vec16 v;
  std::memcpy(&v, &lo, sizeof(lo));
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof(lo), &hi, sizeof(hi));
  return v;
#else
  vec16 v;
  for (int i = 0; i < LANES; ++i) v[i] = static_cast<float>(p[i]);
  return v;
#endif
}

inline void store16(float* p, vec16 v) { std::memcpy(p, &v, sizeof(v)); }

inline void store16(at::Half* p, vec16 v) {
#if defined(__AVX512F__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  __m256 lo, hi;
  std::memcpy(&lo, &v, sizeof(lo));
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(lo), sizeof(hi));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 8),
                   _mm256_cvtps_ph(hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  for (int i = 0; i < LANES; ++i) p[i] = static_cast<at::Half>(v[i]);
#endif
}

// The operands of one call; pointers by value with __restrict so gcc keeps them in registers.
template <typename scalar_t>
struct Operands {
  const int64_t* __restrict perm;    // (N,) original row of each sorted row
  const int64_t* __restrict rowptr;  // (N + 1,) sorted CSR offsets
  const int32_t* __restrict col;     // (E,) column ids
  const float* __restrict weight;    // (E,) edge weights, unused when unweighted
  const int32_t* __restrict meta;    // (B, 4) (degree, row_begin, loc_begin, info)
  const scalar_t* __restrict x;      // (num_cols, width)
  scalar_t* __restrict out;          // (N, width), the caller's row order
  int64_t nnz, width;
};

// Columns [f0, f0 + 16·NV) of Σ_{e0 ≤ e < e1} w_e · x[col_e], kept in NV registers while the
// nonzeros stream past, then written once; the row of x PREFETCH_AHEAD nonzeros on is prefetched.
template <int NV, bool WEIGHTED, typename scalar_t, typename out_t>
__attribute__((always_inline)) inline void tile_sum(const Operands<scalar_t>& op, int64_t e0,
                                                    int64_t e1, int64_t f0, out_t* __restrict dst) {
  const int32_t* __restrict col = op.col;
  const float* __restrict weight = op.weight;
  const scalar_t* __restrict x = op.x + f0;
  const int64_t width = op.width;
  vec16 acc[NV];
#pragma GCC unroll 16
  for (int j = 0; j < NV; ++j) acc[j] = vec16{};
  for (int64_t e = e0; e < e1; ++e) {
    if (e + PREFETCH_AHEAD < op.nnz) {
      const char* ahead = reinterpret_cast<const char*>(x + col[e + PREFETCH_AHEAD] * width);
#pragma GCC unroll 16
      for (int64_t off = 0; off < NV * LANES * int64_t(sizeof(scalar_t)); off += 64)
        __builtin_prefetch(ahead + off);
    }
    const scalar_t* __restrict xr = x + static_cast<int64_t>(col[e]) * width;
    if (WEIGHTED) {
      const float w = weight[e];
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) acc[j] += w * load16(xr + j * LANES);
    } else {
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) acc[j] += load16(xr + j * LANES);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NV; ++j) store16(dst + f0 + j * LANES, acc[j]);
}

// The last width % 16 columns, from f0 on, one lane at a time.
template <bool WEIGHTED, typename scalar_t, typename out_t>
void tail_sum(const Operands<scalar_t>& op, int64_t e0, int64_t e1, int64_t f0,
              out_t* __restrict dst) {
  float acc[LANES] = {};
  const int64_t n = op.width - f0;
  for (int64_t e = e0; e < e1; ++e) {
    const scalar_t* xr = op.x + static_cast<int64_t>(op.col[e]) * op.width + f0;
    const float w = WEIGHTED ? op.weight[e] : 1.0f;
    for (int64_t l = 0; l < n; ++l) acc[l] += w * static_cast<float>(xr[l]);
  }
  for (int64_t l = 0; l < n; ++l) dst[f0 + l] = static_cast<out_t>(acc[l]);
}

// dst[0, width) = Σ_{e0 ≤ e < e1} w_e · x[col_e]: the widest register tiles first.
template <bool WEIGHTED, typename scalar_t, typename out_t>
void segment_sum(const Operands<scalar_t>& op, int64_t e0, int64_t e1, out_t* __restrict dst) {
  int64_t f = 0;
  for (; f + 8 * LANES <= op.width; f += 8 * LANES) tile_sum<8, WEIGHTED>(op, e0, e1, f, dst);
  if (f + 4 * LANES <= op.width) {
    tile_sum<4, WEIGHTED>(op, e0, e1, f, dst);
    f += 4 * LANES;
  }
  if (f + 2 * LANES <= op.width) {
    tile_sum<2, WEIGHTED>(op, e0, e1, f, dst);
    f += 2 * LANES;
  }
  if (f + LANES <= op.width) {
    tile_sum<1, WEIGHTED>(op, e0, e1, f, dst);
    f += LANES;
  }
  if (f < op.width) tail_sum<WEIGHTED>(op, e0, e1, f, dst);
}

// Blocks [b0, b1): rows of degree ≤ 384 go straight to their output row; a row above it is
// summed over its chunks inside the range, and when the range holds only part of it, the
// partial sum goes to one of the range's two fp32 slots (its first and last row) instead.
template <bool WEIGHTED, typename scalar_t>
void run_blocks(const Operands<scalar_t>& op, int64_t b0, int64_t b1, float* __restrict partial,
                int64_t* __restrict partial_row) {
  int slot = 0;
  for (int64_t b = b0; b < b1;) {
    const int32_t* m = op.meta + 4 * b;
    const int64_t degree = m[0], row = m[1], loc = m[2], info = m[3];
    ++b;
    if (degree <= DEG_BOUND) {
      const int64_t rows = info & 0xFFFF;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t e0 = loc + i * degree;
        segment_sum<WEIGHTED>(op, e0, e0 + degree, op.out + op.perm[row + i] * op.width);
      }
      continue;
    }
    int64_t e1 = loc + info;
    for (; b < b1 && op.meta[4 * b] > DEG_BOUND && op.meta[4 * b + 1] == row; ++b)
      e1 = op.meta[4 * b + 2] + op.meta[4 * b + 3];
    if (loc == op.rowptr[row] && e1 == op.rowptr[row + 1]) {
      segment_sum<WEIGHTED>(op, loc, e1, op.out + op.perm[row] * op.width);
    } else {
      TORCH_CHECK(slot < 2, "spmm_cpu: more than two split rows in one part (bad metadata)");
      segment_sum<WEIGHTED>(op, loc, e1, partial + slot * op.width);
      partial_row[slot++] = row;
    }
  }
}

// parts + 1 block boundaries splitting the blocks into ranges of about equal cost (nonzeros plus
// ROW_COST per row); cost before block b is a monotone function of its row_begin and loc_begin.
std::vector<int64_t> split_blocks(const int32_t* meta, int64_t blocks, int64_t rows, int64_t nnz,
                                  int64_t parts) {
  auto cost_before = [&](int64_t b) {
    if (b == blocks) return nnz + ROW_COST * rows;
    return static_cast<int64_t>(meta[4 * b + 2]) + ROW_COST * meta[4 * b + 1];
  };
  std::vector<int64_t> bounds(parts + 1, blocks);
  bounds[0] = 0;
  const int64_t first = cost_before(0), total = cost_before(blocks) - first;
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t target = first + total * p / parts;
    int64_t lo = bounds[p - 1], hi = blocks;  // first b with cost_before(b) >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (cost_before(mid) < target) lo = mid + 1; else hi = mid;
    }
    bounds[p] = lo;
  }
  return bounds;
}

template <bool WEIGHTED, typename scalar_t>
void spmm_impl(const Operands<scalar_t>& op, int64_t rows, int64_t blocks) {
  const int64_t width = op.width;
  const int64_t empty_rows = blocks ? op.meta[1] : rows;  // degree 0 sorts first, gets no block
  for (int64_t r = 0; r < empty_rows; ++r)
    std::fill_n(op.out + op.perm[r] * width, width, static_cast<scalar_t>(0.0f));
  if (!blocks) return;
  const int64_t threads = at::get_num_threads();
  const int64_t parts = (threads == 1 || op.nnz * width < MIN_PARALLEL_WORK)
                            ? 1 : threads * PARTS_PER_THREAD;
  const std::vector<int64_t> bounds = split_blocks(op.meta, blocks, rows, op.nnz, parts);
  std::vector<float> partial(parts * 2 * width);
  std::vector<int64_t> partial_row(parts * 2, -1);
  auto run_part = [&](int64_t p) {
    run_blocks<WEIGHTED>(op, bounds[p], bounds[p + 1], partial.data() + p * 2 * width,
                         partial_row.data() + p * 2);
  };
  if (parts == 1) {
    run_part(0);
  } else {
    std::atomic<int64_t> next{0};
    at::parallel_for(0, std::min(threads, parts), 1, [&](int64_t, int64_t) {
      for (int64_t p = next.fetch_add(1); p < parts; p = next.fetch_add(1)) run_part(p);
    });
  }
  // Rows split across parts: their partial sums sit in consecutive slots, in part order.
  std::vector<float> sum(width);
  int64_t current = -1;
  auto flush = [&] {
    if (current < 0) return;
    scalar_t* dst = op.out + op.perm[current] * width;
    for (int64_t l = 0; l < width; ++l) dst[l] = static_cast<scalar_t>(sum[l]);
  };
  for (int64_t s = 0; s < parts * 2; ++s) {
    if (partial_row[s] < 0) continue;
    const float* src = partial.data() + s * width;
    if (partial_row[s] != current) {
      flush();
      current = partial_row[s];
      std::copy_n(src, width, sum.data());
    } else {
      for (int64_t l = 0; l < width; ++l) sum[l] += src[l];
    }
  }
  flush();
}

}  // namespace

torch::Tensor spmm(torch::Tensor perm, torch::Tensor rowptr, torch::Tensor col,
                   c10::optional<torch::Tensor> weight, torch::Tensor meta, torch::Tensor x) {
  TORCH_CHECK(perm.scalar_type() == at::kLong && rowptr.scalar_type() == at::kLong,
              "spmm_cpu: perm and rowptr must be int64");
  TORCH_CHECK(col.scalar_type() == at::kInt && meta.scalar_type() == at::kInt,
              "spmm_cpu: col and meta must be int32");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "spmm_cpu: x must be a contiguous 2-D tensor");
  const bool weighted = weight.has_value();
  TORCH_CHECK(!weighted || weight->scalar_type() == at::kFloat, "spmm_cpu: weight must be fp32");
  const int64_t rows = perm.numel(), blocks = meta.numel() / 4, width = x.size(1);
  auto out = torch::empty({rows, width}, x.options());
  if (width == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kHalf, x.scalar_type(), "spmm_cpu", [&] {
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, at::Half>) {
      const Operands<scalar_t> op{perm.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>(),
                                  col.data_ptr<int32_t>(),
                                  weighted ? weight->data_ptr<float>() : nullptr,
                                  meta.data_ptr<int32_t>(), x.data_ptr<scalar_t>(),
                                  out.data_ptr<scalar_t>(), col.numel(), width};
      if (weighted) spmm_impl<true>(op, rows, blocks); else spmm_impl<false>(op, rows, blocks);
    } else {
      TORCH_CHECK(false, "spmm_cpu: x must be float32 or float16, got ", x.scalar_type());
    }
  });
  return out;
}
