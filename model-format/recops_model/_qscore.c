/* Approximate scores of users x items from int8 factors, for the exact top-k of recops_model._quant.
 *
 * items:  [blocks][F4][16 items][4 bytes], unsigned bytes q + 128 (q in -127..127), 16 items a block
 * users:  [n_users][F4 * 4] signed bytes p (-127..127); corr[u] = 128 * sum(p[u]) undoes the +128
 * score(u, i) = (float)(sum_d q[i][d] * p[u][d]) * (iscale[i] * uscale[u])
 *
 * AVX-512 VNNI (vpdpbusd: 64 byte products an instruction, four times the float32 FMAs): the 16 items of
 * a block sit in the 16 lanes, so no horizontal sums. The integer sums are exact (|sum| < 2^21), and every
 * entry point computes a score with the same instructions, so they agree to the bit.
 *
 * Its max pass (max_any) keeps one number a user and group of GB blocks: its largest score. qscore_topk bounds each
 * user's k-th best allowed score from those, scores again only the groups that can hold a top-k item, and
 * rescores their items in float32: the exact top-k (recops_model._quant has the argument). qscore_blocks
 * gives every score of chosen blocks (for checks). A plain shared library (no Python API) loaded with ctypes;
 * qscore_supported() says whether this CPU and OS run it. No allocation, no state. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QSCORE_X86 1
#endif

int qscore_supported(void) {
#ifdef QSCORE_X86
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return known;
#else
  return 0;
#endif
}

/* the int8 index and what the kernels read besides; recops_model._quant fills one per model */
typedef struct {
  const uint8_t* items;    /* [blocks][f4][16 items][4 bytes]: q + 128 */
  const float* iscale;     /* n */
  int64_t n;               /* items */
  int64_t f4;              /* 4-byte groups a row: 8, 16 or 32 */
  const int8_t* users;     /* [n_users][f4 * 4] */
  const float* uscale;     /* n_users */
  const int32_t* corr;     /* n_users: 128 * sum(p) */
  const float* V;          /* n x f float32 item factors, row-major */
  const float* U;          /* n_users x f float32 user factors, row-major */
  int64_t f;               /* factors */
  const float* margin;     /* n_users: 2 * beta */
  const int64_t* seen_ptr; /* n_users + 1: CSR of seen items */
  const int32_t* seen_idx; /* ascending within each user */
} qindex_t;

/* blocks a group: the max pass keeps one maximum per GB * 16 consecutive items (fewer maxima to store and
   scan; more items to score again per candidate group). 4: the fastest on 10k and 100k items. */
#define GB 4

/* items a group (recops_model._quant reads it from here) */
int qscore_group_items(void) { return GB * 16; }

#ifdef QSCORE_X86
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

static inline __mmask16 lanes_in(int64_t n, int64_t blk) {
  int64_t left = n - blk * 16;
  return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

/* x = (float)(q . p - corr) * iscale for the 16 items of the block in it[], user u; the score is x * uscale[u]
   (applied after a maximum where it can be: fl(x * s) grows with x for s > 0, so the maximum of the scores
   is fl(max(x) * s), to the bit). sc: the block's iscale. Two accumulator chains: with several users the
   out-of-order core overlaps their chains. Lanes past the last item are left to the caller. */
#define BLOCK_X(F4, it, sc, users, corr, u, out)                                                    \
  do {                                                                                              \
    const int32_t* p_ = (const int32_t*)((users) + (u) * (F4) * 4);                                 \
    __m512i a_ = _mm512_setzero_si512(), b_ = a_;                                                   \
    for (int g = 0; g < (F4); g += 2) {                                                             \
      a_ = _mm512_dpbusd_epi32(a_, (it)[g], _mm512_set1_epi32(p_[g]));                              \
      b_ = _mm512_dpbusd_epi32(b_, (it)[g + 1], _mm512_set1_epi32(p_[g + 1]));                      \
    }                                                                                               \
    __m512i s_ = _mm512_sub_epi32(_mm512_add_epi32(a_, b_), _mm512_set1_epi32((corr)[u]));           \
    (out) = _mm512_mul_ps(_mm512_cvtepi32_ps(s_), (sc));                                            \
  } while (0)

/* the 16 scores of block blk for user u (-inf past the last item): as the max pass compares them */
#define BLOCK_SCORES(F4, it, M, blk, u, out)                                                        \
  do {                                                                                              \
    __mmask16 m_ = lanes_in((M)->n, (blk));                                                         \
    __m512 sc_ = _mm512_maskz_loadu_ps(m_, (M)->iscale + (blk) * 16), x_;                           \
    BLOCK_X(F4, it, sc_, (M)->users, (M)->corr, (u), x_);                                           \
    (out) = _mm512_mask_blend_ps(m_, _mm512_set1_ps(-INFINITY), _mm512_mul_ps(x_, _mm512_set1_ps((M)->uscale[u]))); \
  } while (0)

#define LOAD_BLOCK(F4, it, items, blk)                                                              \
  for (int g = 0; g < (F4); g++) (it)[g] = _mm512_loadu_si512((const void*)((items) + (blk) * ((F4) * 64) + g * 64))

/* float32 u . v over f factors: 16-lane FMAs in factor order, then a fixed reduction (deterministic) */
TARGET static float exact_dot(const float* v, const float* u, int64_t f) {
  __m512 acc = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 16 <= f; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + d), _mm512_loadu_ps(u + d), acc);
  if (d < f) {
    __mmask16 m = (__mmask16)((1u << (f - d)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + d), _mm512_maskz_loadu_ps(m, u + d), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

/* un[j] = max over r < rows of s[r * w + j], j < w */
TARGET static void union_max(const float* s, int64_t rows, int64_t w, float* un) {
  for (int64_t j = 0; j < w; j++) un[j] = -INFINITY;
  for (int64_t r = 0; r < rows; r++) {
    const float* x = s + r * w;
    int64_t j = 0;
    for (; j + 16 <= w; j += 16) _mm512_storeu_ps(un + j, _mm512_max_ps(_mm512_loadu_ps(un + j), _mm512_loadu_ps(x + j)));
    for (; j < w; j++) un[j] = x[j] > un[j] ? x[j] : un[j];
  }
}

static int in_sorted(const int32_t* a, int64_t len, int64_t x) {
  int64_t lo = 0, hi = len;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (a[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo < len && a[lo] == x;
}

/* keep the best k (score desc, then item asc) in top[0..*len), sorted */
static void offer(int64_t* top, float* val, int64_t* len, int64_t k, int64_t item, float s) {
  int64_t at = *len;
  if (at == k) {
    if (s < val[k - 1] || (s == val[k - 1] && item > top[k - 1])) return;
    at = k - 1;
  } else {
    (*len)++;
  }
  while (at > 0 && (val[at - 1] < s || (val[at - 1] == s && top[at - 1] > item))) {
    top[at] = top[at - 1];
    val[at] = val[at - 1];
    at--;
  }
  top[at] = item;
  val[at] = s;
}

/* ask for bytes [p, p + len) ahead of use, a cache line at a time */
static inline void prefetch(const uint8_t* p, int64_t len) {
  for (int64_t o = 0; o < len; o += 64) __builtin_prefetch(p + o, 0, 3);
}

/* the k-th largest of a[0..n) (1 <= k <= n), reordering a: for small k a sorted list of the k largest
   (each value is mostly compared once with the smallest kept), else quickselect (no NaN in a) */
static float kth_largest(float* a, int64_t n, int64_t k) {
  if (k <= 32) {
    float best[32];
    int64_t len = 0;
    for (int64_t i = 0; i < n; i++) {
      float x = a[i];
      if (len == k && !(x > best[k - 1])) continue;
      int64_t at = len < k ? len++ : k - 1;
      while (at > 0 && best[at - 1] < x) { best[at] = best[at - 1]; at--; }
      best[at] = x;
    }
    return best[k - 1];
  }
  int64_t lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi) {
    float pivot = a[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        float t = a[i]; a[i] = a[j]; a[j] = t;
        i++; j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}

typedef qindex_t model_t;

typedef struct {
  const int32_t* seen; int64_t n_seen; const int32_t* excl; int64_t n_excl; const uint16_t* allowed;
} masks_t;

#define KERNELS(F4)                                                                                     \
  TARGET static void max_##F4(const model_t* M, const int64_t* rows, int64_t B, const uint16_t* allowed,   \
                              float* gm, int64_t ldg, __m512* part) {                                  \
    int64_t nb = (M->n + 15) / 16;                                                                      \
    const __m512 ninf = _mm512_set1_ps(-INFINITY);                                                      \
    for (int64_t blk = 0; blk < nb; blk++) {                                                            \
      __m512i it[F4];                                                                                   \
      LOAD_BLOCK(F4, it, M->items, blk);                                                                \
      __mmask16 in = lanes_in(M->n, blk), m = allowed ? (__mmask16)(in & allowed[blk]) : in;            \
      __m512 sc = _mm512_maskz_loadu_ps(in, M->iscale + blk * 16);                                      \
      int first = blk % GB == 0, last = blk % GB == GB - 1 || blk == nb - 1;                            \
      for (int64_t b = 0; b < B; b++) {                                                                 \
        __m512 x;                                                                                       \
        BLOCK_X(F4, it, sc, M->users, M->corr, rows[b], x);                                             \
        if (m != 0xFFFF) x = _mm512_mask_blend_ps(m, ninf, x);                                          \
        if (!first) x = _mm512_max_ps(x, part[b]);                                                      \
        if (last) gm[b * ldg + blk / GB] = _mm512_reduce_max_ps(x) * M->uscale[rows[b]];                \
        else part[b] = x;                                                                               \
      }                                                                                                 \
    }                                                                                                   \
    for (int64_t b = 0; b < B; b++)                                                                     \
      for (int64_t c = (nb + GB - 1) / GB; c < ldg; c++) gm[b * ldg + c] = -INFINITY;                   \
  }                                                                                                     \
  TARGET static void blocks_##F4(const model_t* M, const int64_t* rows, const int64_t* cols, int64_t P,  \
                                 float* out) {                                                          \
    for (int64_t p = 0; p < P; p++) {                                                                   \
      __m512i it[F4];                                                                                   \
      __m512 v;                                                                                         \
      LOAD_BLOCK(F4, it, M->items, cols[p]);                                                            \
      BLOCK_SCORES(F4, it, M, cols[p], rows[p], v);                                                     \
      _mm512_storeu_ps(out + p * 16, v);                                                                \
    }                                                                                                   \
  }                                                                                                     \
  /* one user's exact top-k (see qscore_topk): 1 if found, 0 if the caller must score the user in full */ \
  TARGET static int topk_##F4(const model_t* M, const masks_t* X, int64_t row, int64_t k, float margin,  \
                              const float* gm, int64_t ldg, int64_t cap, float* scratch, int64_t* top,   \
                              float* val) {                                                             \
    /* w unions of groups: up to 512 (more: a tighter theta but a longer selection; at 100k items 1024 */ \
    /* was 20% slower, 256 no faster), at least k                                                     */ \
    int64_t w = ldg < 512 ? ldg : 512;                                                                  \
    if (w < k) w = k;                                                                                   \
    if (ldg < w) return 0;                                                                              \
    float* un = scratch + ldg; /* w floats */                                                           \
    memcpy(scratch, gm, (size_t)ldg * sizeof(float));                                                   \
    for (int64_t i = 0; i < X->n_seen; i++) scratch[X->seen[i] / (16 * GB)] = -INFINITY;                \
    for (int64_t i = 0; i < X->n_excl; i++) scratch[X->excl[i] / (16 * GB)] = -INFINITY;                \
    /* union j: groups c = j (mod w), c < (ldg / w) * w. The k-th largest union maximum bounds the k-th */ \
    /* best allowed score from below: k disjoint sets of groups each hold an allowed item that large.  */ \
    union_max(scratch, ldg / w, w, un);                                                                 \
    float thr = kth_largest(un, w, k) - margin;                                                         \
    if (!isfinite(thr)) return 0;                                                                       \
    int64_t len = 0, found = 0;                                                                         \
    const float* u = M->U + row * M->f;                                                                 \
    const __m512 vthr = _mm512_set1_ps(thr);                                                            \
    /* the groups reaching thr, listed first (scratch is free again) so that their bytes can be fetched */ \
    /* ahead of use: they are scattered over the catalogue and each would stall on memory              */ \
    int32_t* cand = (int32_t*)scratch;                                                                  \
    int64_t nc = 0;                                                                                     \
    for (int64_t c0 = 0; c0 < ldg; c0 += 16) { /* ldg is a multiple of 16 */                          \
      __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(gm + c0), vthr, _CMP_GE_OQ);                   \
      for (; hit; hit &= (__mmask16)(hit - 1)) cand[nc++] = (int32_t)(c0 + __builtin_ctz(hit));         \
    }                                                                                                   \
    const int64_t group_bytes = GB * (F4) * 64, ahead = 2;                                              \
    for (int64_t i = 0; i < ahead && i < nc; i++) prefetch(M->items + cand[i] * group_bytes, group_bytes); \
    float lanes[16];                                                                                    \
    int64_t todo[32], nt = 0;                                                                           \
    for (int64_t i = 0; i < nc; i++) {                                                                  \
      if (i + ahead < nc) prefetch(M->items + cand[i + ahead] * group_bytes, group_bytes);              \
      int64_t grp = cand[i];                                                                            \
      for (int64_t blk = grp * GB; blk < grp * GB + GB && blk * 16 < M->n; blk++) {                     \
        __m512i it[F4];                                                                                 \
        __m512 v;                                                                                       \
        LOAD_BLOCK(F4, it, M->items, blk);                                                              \
        BLOCK_SCORES(F4, it, M, blk, row, v);                                                           \
        __mmask16 pass = _mm512_cmp_ps_mask(v, vthr, _CMP_GE_OQ);                                       \
        if (X->allowed) pass &= X->allowed[blk];                                                        \
        _mm512_storeu_ps(lanes, v);                                                                     \
        for (; pass; pass &= (__mmask16)(pass - 1)) {                                                   \
          int64_t item = blk * 16 + __builtin_ctz(pass);                                                \
          if (X->n_seen && in_sorted(X->seen, X->n_seen, item)) continue;                               \
          if (X->n_excl && in_sorted(X->excl, X->n_excl, item)) continue;                               \
          if (++found > cap) return 0;                                                                  \
          /* rescored in batches: their float32 rows are fetched together, not one stall each */       \
          prefetch((const uint8_t*)(M->V + item * M->f), M->f * 4);                                     \
          todo[nt++] = item;                                                                            \
          if (nt == 32) {                                                                               \
            for (int64_t t = 0; t < nt; t++)                                                            \
              offer(top, val, &len, k, todo[t], exact_dot(M->V + todo[t] * M->f, u, M->f));            \
            nt = 0;                                                                                     \
          }                                                                                             \
        }                                                                                               \
      }                                                                                                 \
    }                                                                                                   \
    for (int64_t t = 0; t < nt; t++) offer(top, val, &len, k, todo[t], exact_dot(M->V + todo[t] * M->f, u, M->f)); \
    return len == k && isfinite(val[k - 1]);                                                            \
  }

KERNELS(8)
KERNELS(16)
KERNELS(32)

/* the max pass: gm[b * ldg + c] = the largest score in group c for user rows[b], over the items allowed
   (bit item % 16 of allowed[item / 16]; NULL: all), -inf where none and from ceil(n / (GB * 16)) up to ldg.
   Users in chunks of 64 (part[] holds their running group maxima). */
TARGET static int max_any(const model_t* M, const int64_t* rows, int64_t B, const uint16_t* allowed, float* gm,
                          int64_t ldg) {
  __m512 part[64];
  for (int64_t b0 = 0; b0 < B; b0 += 64) {
    int64_t nb = B - b0 < 64 ? B - b0 : 64;
    switch (M->f4) {
      case 8: max_8(M, rows + b0, nb, allowed, gm + b0 * ldg, ldg, part); break;
      case 16: max_16(M, rows + b0, nb, allowed, gm + b0 * ldg, ldg, part); break;
      case 32: max_32(M, rows + b0, nb, allowed, gm + b0 * ldg, ldg, part); break;
      default: return -1;
    }
  }
  return 0;
}
#endif

/* Entry points (M: the index): each returns 0, or -1 without a kernel for M->f4 or on a CPU without AVX-512 VNNI. */

/* out[p * 16 + lane] = the score of item cols[p] * 16 + lane for user rows[p] (-inf past the last item) */
int qscore_blocks(const qindex_t* M, const int64_t* rows, const int64_t* cols, int64_t P, float* out) {
#ifdef QSCORE_X86
  if (!qscore_supported()) return -1;
  switch (M->f4) {
    case 8: blocks_8(M, rows, cols, P, out); return 0;
    case 16: blocks_16(M, rows, cols, P, out); return 0;
    case 32: blocks_32(M, rows, cols, P, out); return 0;
  }
  return -1;
#else
  (void)M; (void)rows; (void)cols; (void)P; (void)out;
  return -1;
#endif
}

/* The exact top-k of each user rows[b] (b < B). The max pass's group maxima go to gm (B x ldg, ldg a multiple
   of 16 and >= ceil(n / (GB * 16))). The k-th largest maximum of (at least k) unions of groups that hold
   no masked item bounds the user's k-th best allowed score from below (theta); every group whose maximum
   reaches theta - margin[row] is scored again, and each allowed item reaching it is rescored in float32
   from V and U.
   Masked: the user's seen items when seen != 0, the ascending excl[n_excl], and items whose bit
   (item % 16) is clear in allowed[item / 16] (a category; NULL: none). Writes top[b * k ..] and val[b * k ..] best
   first (ties by lower item) and ok[b] = 1, or ok[b] = 0 where the bound cannot be used (fewer than k
   groups, a row mostly masked, more than cap items to rescore): the caller scores that user in full.
   scratch: ldg + max(k, 512) floats. */
int qscore_topk(const qindex_t* M, const int64_t* rows, int64_t B, int64_t k, int seen, const int32_t* excl,
                int64_t n_excl, const uint16_t* allowed, int64_t cap, int64_t ldg, float* gm, float* scratch,
                int64_t* top, float* val, uint8_t* ok) {
#ifdef QSCORE_X86
  masks_t X = {0, 0, excl, n_excl, allowed};
  int (*one)(const model_t*, const masks_t*, int64_t, int64_t, float, const float*, int64_t, int64_t, float*,
             int64_t*, float*) = 0;
  if (!qscore_supported()) return -1;
  switch (M->f4) {
    case 8: one = topk_8; break;
    case 16: one = topk_16; break;
    case 32: one = topk_32; break;
    default: return -1;
  }
  if (max_any(M, rows, B, allowed, gm, ldg)) return -1;
  for (int64_t b = 0; b < B; b++) {
    int64_t row = rows[b];
    X.seen = seen ? M->seen_idx + M->seen_ptr[row] : 0;
    X.n_seen = seen ? M->seen_ptr[row + 1] - M->seen_ptr[row] : 0;
    ok[b] = (uint8_t)one(M, &X, row, k, M->margin[row], gm + b * ldg, ldg, cap, scratch, top + b * k, val + b * k);
  }
  return 0;
#else
  (void)M; (void)rows; (void)B; (void)k; (void)seen; (void)excl; (void)n_excl; (void)allowed; (void)cap; (void)ldg; (void)gm; (void)scratch; (void)top; (void)val; (void)ok;
  return -1;
#endif
}
