/* Runtime of the integer-only int8 predictor, format c-int8-full (template).
 *
 * nn_core/export/c_int8.py copies into NAME.c each section between "@begin HELPER" and
 * "@end HELPER" that the generated code calls (and the sections those call), with the
 * symbol prefix NAME replaced by the export's name, and @KEY@ by the constants of
 * nn_core/export/int8.py. The maths is described there and in docs/embedded.md; the
 * NumPy model of every step is nn_core/export/int8.py: predict_int8_full.
 *
 * Everything between the quantisation of the first layer's inputs (quantise_input) and
 * the final conversion of the fixed-point probability (probability) is integer arithmetic:
 * int8 activations and weights, int32 accumulators, one 32 x 32 -> 64-bit multiply and
 * shift per output. A right shift of a negative number is arithmetic in every compiler this is built
 * with (GCC, Clang, arm-none-eabi-gcc); C99 leaves it to the implementation.
 *
 * This file is plain C99 as it stands (the golden test compiles it):
 *     gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -Wdouble-promotion -Wfloat-conversion
 *         -Wshadow -Wno-unused-function -c int8.c
 */
#define NAMEUP_LOGIT_BITS 12
#define NAMEUP_SIGMOID_STEP_BITS 3
#define NAMEUP_SIGMOID_RANGE 16
#define NAMEUP_PROB_ONE 32768

/* @begin quantise_input */
/* Layer-0 input code of v = u * a + b (u the raw or log1p'd input, NaN excluded before):
   clamped to [-127, 127], then rounded half away from zero. */
static signed char NAME_quantise_input(float v)
{
    if (v >= 127.0f) {
        return 127;
    }
    if (v <= -127.0f) {
        return -127;
    }
    return (signed char)(v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v));
}
/* @end quantise_input */

/* @begin dot */
/* sum_i x[i] w[i] in int32 (a dense layer's input row times one output's weights). */
static int NAME_dot(const signed char *x, const signed char *w, int n)
{
    int acc = 0, i = 0;
    for (; i + 4 <= n; i += 4) { /* four at a time: a quarter of the loop's overhead */
        acc += x[i] * w[i] + x[i + 1] * w[i + 1] + x[i + 2] * w[i + 2] + x[i + 3] * w[i + 3];
    }
    for (; i < n; ++i) {
        acc += x[i] * w[i];
    }
    return acc;
}
/* @end dot */

/* @begin dot_rows */
/* sum_t v[t] w[rows[t]] in int32: layer 0, whose input is zero but for the numeric
   features and one one-hot feature per categorical input (m of them in all). */
static int NAME_dot_rows(const signed char *v, const int *rows, int m, const signed char *w)
{
    /* The bound as m less its remainder, not "t + 4 <= m": with that test and a constant m
       that is a multiple of 4, arm-none-eabi-gcc 12 at -O2 wrongly reports undefined
       behaviour in the remainder loop (-Werror=aggressive-loop-optimizations). */
    const int m4 = m - m % 4;
    int acc = 0, t = 0;
    for (; t < m4; t += 4) {
        acc += v[t] * w[rows[t]] + v[t + 1] * w[rows[t + 1]] + v[t + 2] * w[rows[t + 2]]
               + v[t + 3] * w[rows[t + 3]];
    }
    for (; t < m; ++t) {
        acc += v[t] * w[rows[t]];
    }
    return acc;
}
/* @end dot_rows */

/* @begin requantise */
/* round(acc * m * 2^-r), half up: the 64-bit product plus 2^(r-1), shifted right by r
   (m in [2^30, 2^31), 1 <= r <= 62: the fixed-point multiplier); saturated to
   +-(2^30 - 1) so that adding a zero point cannot overflow. */
static int NAME_requantise(int acc, int m, int r)
{
    const long long v = ((long long)acc * m + (1LL << (r - 1))) >> r;
    return v > 0x3FFFFFFFLL ? 0x3FFFFFFF : v < -0x3FFFFFFFLL ? -0x3FFFFFFF : (int)v;
}
/* @end requantise */

/* @begin activate */
/* A hidden unit's int8 output: zero point plus the requantised accumulator, clamped to
   [-128, 127] (for ReLU the zero point is -128, so this clamp is the ReLU), then the
   activation's table when it has one. */
static signed char NAME_activate(int acc, int m, int r, int zero, const signed char *table)
{
    int q = zero + NAME_requantise(acc, m, r);
    q = q < -128 ? -128 : q > 127 ? 127 : q;
    return (signed char)(table != 0 ? table[q + 128] : q);
}
/* @end activate */

/* @begin probability */
/* sigmoid(L 2^-LOGIT_BITS) from the table of round(2^15 sigmoid(t / 8)), t = 0..8 * RANGE,
   interpolated linearly (half up); 1 - sigmoid(-x) below 0. The one conversion to float is
   the result: p / 2^15 (PROB_ONE = 2^15). */
static float NAME_probability(int L, const unsigned short *table)
{
    const int frac = NAMEUP_LOGIT_BITS - NAMEUP_SIGMOID_STEP_BITS;
    const int top = NAMEUP_SIGMOID_RANGE << NAMEUP_LOGIT_BITS;
    const int a = L >= top || L <= -top ? top : L >= 0 ? L : -L;
    const int i = a >> frac, f = a & ((1 << frac) - 1);
    const int lo = table[i];
    const int hi = i < (NAMEUP_SIGMOID_RANGE << NAMEUP_SIGMOID_STEP_BITS) ? table[i + 1] : lo;
    const int p = lo + (((hi - lo) * f + (1 << (frac - 1))) >> frac);
    return (float)(L >= 0 ? p : NAMEUP_PROB_ONE - p) * (1.0f / (float)NAMEUP_PROB_ONE);
}
/* @end probability */

/* @begin saturate */
/* A combined model's fixed-point logit: the members' requantised logits summed in 64 bits
   (K of them cannot overflow it), saturated to +-(2^30 - 1) like one requantisation. */
static int NAME_saturate(long long v)
{
    return v > 0x3FFFFFFFLL ? 0x3FFFFFFF : v < -0x3FFFFFFFLL ? -0x3FFFFFFF : (int)v;
}
/* @end saturate */

/* @begin calibrated */
/* q(sigmoid(L 2^-LOGIT_BITS)), q an isotonic calibration, from the table of
   round(2^15 q(sigmoid(t / 8))), t = -8 * RANGE..8 * RANGE (no symmetry: q has none),
   interpolated linearly (half up) and clamped beyond the range; p / 2^15 as float. */
static float NAME_calibrated(int L, const unsigned short *table)
{
    const int frac = NAMEUP_LOGIT_BITS - NAMEUP_SIGMOID_STEP_BITS;
    const int top = NAMEUP_SIGMOID_RANGE << NAMEUP_LOGIT_BITS;
    const int a = (L >= top ? top : L <= -top ? -top : L) + top;
    const int i = a >> frac, f = a & ((1 << frac) - 1);
    const int lo = table[i];
    const int hi = i < (NAMEUP_SIGMOID_RANGE << (NAMEUP_SIGMOID_STEP_BITS + 1)) ? table[i + 1]
                                                                               : lo;
    const int p = lo + (((hi - lo) * f + (1 << (frac - 1))) >> frac);
    return (float)p * (1.0f / (float)NAMEUP_PROB_ONE);
}
/* @end calibrated */
