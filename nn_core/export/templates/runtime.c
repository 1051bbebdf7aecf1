/* Fixed helper functions of the generated C predictors (template).
 *
 * nn_core/export/c.py copies into NAME.c each section between "@begin HELPER" and
 * "@end HELPER" that the generated code calls (and the sections those call), in the order
 * of this file, with the symbol prefix NAME replaced by the export's name. Only used
 * helpers are copied because an unused static function breaks -Werror.
 *
 * This file is plain C99 as it stands, so a compiler checks it (the golden test does):
 *     gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -Wdouble-promotion -Wfloat-conversion
 *         -Wshadow -Wno-unused-function -c runtime.c
 * Nothing outside the sections is copied.
 */
#include <math.h>

/* @begin code_offset */
/* Block index of an integer code in [lo, lo + n - 1]: the code minus lo; anything else
   (other numbers, non-integers, NaN: every comparison with NaN is false) -> n (unseen). */
static int NAME_code_offset(float v, int lo, int n)
{
    int c;
    if (!(v >= (float)lo && v <= (float)(lo + n - 1))) {
        return n;
    }
    c = (int)v;
    return (float)c == v ? c - lo : n;
}
/* @end code_offset */

/* @begin code_lut */
/* Block index through a table over the code range [lo, lo + n - 1]; unseen -> k_unseen. */
static int NAME_code_lut(float v, int lo, int n, const unsigned char *lut, int k_unseen)
{
    const int i = NAME_code_offset(v, lo, n);
    return i < n ? (int)lut[i] : k_unseen;
}
/* @end code_lut */

/* @begin code_search */
/* Block index by search: position of v in codes, n (unseen) when absent (or NaN). */
static int NAME_code_search(float v, const float *codes, int n)
{
    int k = 0;
    while (k < n && codes[k] != v) {
        ++k;
    }
    return k;
}
/* @end code_search */

/* @begin ple_bin */
/* Bin of v in a piecewise-linear encoding with edges e[0] < ... < e[n-1] (the last edge is
   not needed): the number of inner edges e[1..n-1] at or below v, 0..n-1 (NaN never gets
   here: the validity test returns first). */
static int NAME_ple_bin(float v, const float *e, int n)
{
    int k = 0;
    while (k + 1 < n && v >= e[k + 1]) {
        ++k;
    }
    return k;
}
/* @end ple_bin */

/* @begin rank_score */
/* Gaussian rank of v: e[0] at or below the first knot q[0], e[1] at or above the last
   q[n-1] (scikit-learn's end rule), between them the scores s[0..n-1] interpolated
   linearly between the knots q[0] < ... < q[n-1] (float32 knots may repeat). A binary
   search with a fixed number of steps finds the last knot k at or below v, so
   q[k] <= v < q[k + 1]: the width is never 0. (NaN never gets here.) */
static float NAME_rank_score(float v, const float *q, const float *s, int n, const float *e)
{
    int k = 0, step = 1;
    if (!(v > q[0])) {
        return e[0];
    }
    if (v >= q[n - 1]) {
        return e[1];
    }
    while (2 * step < n) {
        step *= 2;
    }
    for (; step > 0; step /= 2) {
        if (k + step < n && q[k + step] <= v) {
            k += step;
        }
    }
    return s[k] + (v - q[k]) * ((s[k + 1] - s[k]) / (q[k + 1] - q[k]));
}
/* @end rank_score */

/* @begin sigmoid */
/* 1 / (1 + e^-z) without overflow: exp of a non-positive number only. */
static float NAME_sigmoid(float z)
{
    float e;
    if (z >= 0.0f) {
        return 1.0f / (1.0f + expf(-z));
    }
    e = expf(z);
    return e / (1.0f + e);
}
/* @end sigmoid */

/* @begin round8 */
/* Round half away from zero (|v| <= 127.5 here, so the int conversion is defined). */
static signed char NAME_round8(float v)
{
    return (signed char)(v >= 0.0f ? (int)(v + 0.5f) : -(int)(0.5f - v));
}
/* @end round8 */

/* @begin quantise */
/* Dynamic symmetric quantisation of a[0..n-1]: q = round(a * 127 / max|a|).
   Returns the scale t = max|a| / 127 (0 for an all-zero vector, then q = 0). */
static float NAME_quantise(signed char *q, const float *a, int n)
{
    float peak = 0.0f, inv;
    int i;
    for (i = 0; i < n; ++i) {
        const float m = a[i] >= 0.0f ? a[i] : -a[i];
        peak = m > peak ? m : peak;
    }
    inv = peak > 0.0f ? 127.0f / peak : 0.0f;
    for (i = 0; i < n; ++i) {
        q[i] = NAME_round8(a[i] * inv);
    }
    return peak / 127.0f;
}
/* @end quantise */
