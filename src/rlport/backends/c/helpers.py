"""The C helper functions the emitted code calls (linear, conv2d, argmax, layer norm, LSTM layer).

Each is a template over the compute type ``$T`` (``float`` or ``double``) with math functions
suffixed by ``$m`` (``tanhf`` or ``tanh``); :func:`helper` instantiates one and names it by its
type (``rl_linear_f``). The loops follow graph/reference.py's order of operations: a linear
layer sums ``x[i] * W[o, i]`` over ``i`` in order for every output (vectorisable over outputs),
then adds the bias. Needs the standard library only.
"""

from __future__ import annotations

from string import Template

from rlport.backends.c.program import Program, short_name

__all__ = ["helper", "int8_helper"]

_TEMPLATES: dict[str, str] = {
    "linear": """static void rl_linear_$s(int n_in, int n_out, const $T *restrict x, const $T *restrict wt,
                        const $T *restrict b, $T *restrict y)
{
    for (int o = 0; o < n_out; ++o) y[o] = 0;
    for (int i = 0; i < n_in; ++i) {
        const $T xi = x[i];
        const $T *restrict w = wt + (long)i * n_out;
        for (int o = 0; o < n_out; ++o) y[o] += xi * w[o];
    }
    if (b) for (int o = 0; o < n_out; ++o) y[o] += b[o];
}""",
    "conv2d": """static void rl_conv2d_$s(const $T *restrict x, int c, int h, int w, const $T *restrict k,
                        const $T *restrict b, int out_c, int kh, int kw, const int *geometry, $T *restrict y)
{
    /* geometry: stride (2), padding (2), dilation (2), groups, output height, output width */
    const int sh = geometry[0], sw = geometry[1], ph = geometry[2], pw = geometry[3];
    const int dh = geometry[4], dw = geometry[5], groups = geometry[6], ho = geometry[7], wo = geometry[8];
    const int per_in = c / groups, per_out = out_c / groups;
    for (int o = 0; o < out_c; ++o) {
        const int g = o / per_out;
        for (int oy = 0; oy < ho; ++oy) {
            for (int ox = 0; ox < wo; ++ox) {
                $T acc = 0;
                for (int ci = 0; ci < per_in; ++ci) {
                    const $T *xc = x + (long)(g * per_in + ci) * h * w;
                    const $T *kc = k + ((long)o * per_in + ci) * kh * kw;
                    for (int ky = 0; ky < kh; ++ky) {
                        const int iy = oy * sh - ph + ky * dh;
                        if (iy < 0 || iy >= h) continue;
                        for (int kx = 0; kx < kw; ++kx) {
                            const int ix = ox * sw - pw + kx * dw;
                            if (ix < 0 || ix >= w) continue;
                            acc += xc[(long)iy * w + ix] * kc[ky * kw + kx];
                        }
                    }
                }
                y[((long)o * ho + oy) * wo + ox] = b ? acc + b[o] : acc;
            }
        }
    }
}""",
    "argmax": """static int64_t rl_argmax_$s(int n, const $T *x, const unsigned char *mask, const $T masked)
{
    /* numpy's argmax: the first largest, or the first NaN; a masked-out element counts as `masked` */
    int64_t best = 0;
    $T top = 0;
    for (int i = 0; i < n; ++i) {
        const $T v = (mask && !mask[i]) ? masked : x[i];
        if (v != v) return i;
        if (i == 0 || v > top) { best = i; top = v; }
    }
    return best;
}""",
    "gumbel_argmax": """static int64_t rl_gumbel_argmax_$s(int n, const $T *x, const unsigned char *mask,
                                  const $T masked, const float *u)
{
    /* argmax(logits + Gumbel noise) in double, as graph/reference.py samples a categorical */
    int64_t best = 0;
    double top = 0;
    for (int i = 0; i < n; ++i) {
        const double v = (double)((mask && !mask[i]) ? masked : x[i]) - log(-log((double)u[i]));
        if (v != v) return i;
        if (i == 0 || v > top) { best = i; top = v; }
    }
    return best;
}""",
    "any": """static int rl_any(int n, const unsigned char *mask)
{
    for (int i = 0; i < n; ++i) if (mask[i]) return 1;
    return 0;
}""",
    "normal": """static double rl_normal(const float *u)
{
    /* Box-Muller: two uniforms in [0, 1) give one standard normal number */
    return sqrt(-2.0 * log(1.0 - (double)u[0])) * cos(6.283185307179586 * (double)u[1]);
}""",
    "normalised": """static void rl_normalised_$s(int n, const $T *x, $T epsilon, $T *y)
{
    /* (x - mean(x)) / sqrt(var(x) + epsilon), population variance */
    $T mean = 0, var = 0;
    for (int i = 0; i < n; ++i) mean += x[i];
    mean /= ($T)n;
    for (int i = 0; i < n; ++i) { y[i] = x[i] - mean; var += y[i] * y[i]; }
    var /= ($T)n;
    {
        const $T scale = sqrt$m(var + epsilon);
        for (int i = 0; i < n; ++i) y[i] /= scale;
    }
}""",
    "lstm": """static void rl_lstm_$s(int n_in, int hidden, const $T *x, const $T *h, const $T *c, const $T *wih_t,
                      const $T *whh_t, const $T *bias, const $T *ln, $T epsilon, $T *a, $T *b, $T *h_out, $T *c_out)
{
    /* one layer: gates = x W_ih^T + h W_hh^T + bias (or their layer-normalised forms); i, f, g, o */
    const int n = 4 * hidden;
    rl_linear_$s(n_in, n, x, wih_t, 0, a);
    rl_linear_$s(hidden, n, h, whh_t, 0, b);
    if (ln) {
        rl_normalised_$s(n, a, epsilon, a);
        rl_normalised_$s(n, b, epsilon, b);
        for (int j = 0; j < n; ++j) a[j] = a[j] * ln[j] + b[j] * ln[n + j] + bias[j];
    } else {
        for (int j = 0; j < n; ++j) a[j] = a[j] + b[j] + bias[j];
    }
    for (int j = 0; j < hidden; ++j) {
        const $T i_ = ($T)0.5 * (($T)1 + tanh$m(($T)0.5 * a[j]));
        const $T f_ = ($T)0.5 * (($T)1 + tanh$m(($T)0.5 * a[hidden + j]));
        c_out[j] = f_ * c[j] + i_ * tanh$m(a[2 * hidden + j]);
    }
    if (ln) {
        rl_normalised_$s(hidden, c_out, epsilon, b);
        for (int j = 0; j < hidden; ++j) b[j] = b[j] * ln[2 * n + j] + ln[2 * n + hidden + j];
    }
    for (int j = 0; j < hidden; ++j) {
        const $T o_ = ($T)0.5 * (($T)1 + tanh$m(($T)0.5 * a[3 * hidden + j]));
        h_out[j] = o_ * tanh$m(ln ? b[j] : c_out[j]);
    }
}""",
}

_INT8_TEMPLATES: dict[str, str] = {
    "quantise": """static int rl_quantise(int n, const float *x, float s, int8_t *q)
{
    /* clip(round_half_even(x / s), -128, 127), as ONNX QuantizeLinear computes it; 1 when x holds a NaN */
    for (int i = 0; i < n; ++i) {
        const float r = nearbyintf(x[i] / s);
        if (r != r) return 1;
        q[i] = (int8_t)(r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r));
    }
    return 0;
}""",
    "linear_q8": """static void rl_linear_q8(int n_in, int n_out, const int8_t *restrict x, const int8_t *restrict wt,
                         const float *restrict scale, const float *restrict b, int32_t *restrict acc,
                         float *restrict y)
{
    /* int8 x int8 -> int32, then one float scale per output (weight scale x activation scale) */
    for (int o = 0; o < n_out; ++o) acc[o] = 0;
    for (int i = 0; i < n_in; ++i) {
        const int32_t xi = x[i];
        const int8_t *restrict w = wt + (long)i * n_out;
        for (int o = 0; o < n_out; ++o) acc[o] += xi * (int32_t)w[o];
    }
    for (int o = 0; o < n_out; ++o) y[o] = (float)acc[o] * scale[o] + (b ? b[o] : 0.0f);
}""",
    "linear_w8": """static void rl_linear_w8(int n_in, int n_out, const float *restrict x, const int8_t *restrict wt,
                         const float *restrict scale, const float *restrict b, float *restrict y)
{
    /* int8 weights, float activations: the sum over inputs, then one float scale per output */
    for (int o = 0; o < n_out; ++o) y[o] = 0;
    for (int i = 0; i < n_in; ++i) {
        const float xi = x[i];
        const int8_t *restrict w = wt + (long)i * n_out;
        for (int o = 0; o < n_out; ++o) y[o] += xi * (float)w[o];
    }
    for (int o = 0; o < n_out; ++o) y[o] = y[o] * scale[o] + (b ? b[o] : 0.0f);
}""",
}

_CONV_INT8 = {
    # name: (input type, accumulator type)
    "conv2d_q8": ("int8_t", "int32_t"),
    "conv2d_w8": ("float", "float"),
}

_NEEDS = {"lstm": ("linear", "normalised")}
_UNTYPED = {"any", "normal"}


def int8_helper(p: Program, name: str) -> str:
    """Define an int8 helper (quantise, linear_q8, linear_w8, conv2d_q8, conv2d_w8); return its C name."""
    if name in _CONV_INT8:
        x_type, acc = _CONV_INT8[name]
        text = Template(_TEMPLATES["conv2d"]).substitute(T="float", s=name.split("_")[1], m="f")
        for old, new in (
            ("const float *restrict x", f"const {x_type} *restrict x"),
            ("const float *xc", f"const {x_type} *xc"),
            ("const float *restrict k", "const int8_t *restrict k"),
            ("const float *kc", "const int8_t *kc"),
            ("const float *restrict b, int out_c", "const float *restrict b, const float *restrict scale, int out_c"),
            ("float acc = 0;", f"{acc} acc = 0;"),
            ("acc += xc[(long)iy * w + ix] * kc[", f"acc += ({acc})xc[(long)iy * w + ix] * ({acc})kc["),
            ("b ? acc + b[o] : acc;", "(float)acc * scale[o] + (b ? b[o] : 0.0f);"),
        ):
            text = text.replace(old, new)
        return p.helper(f"rl_conv2d_{name.split('_')[1]}", text)
    return p.helper(f"rl_{name}", _INT8_TEMPLATES[name])


def helper(p: Program, name: str, ctype: str = "float") -> str:
    """Define helper ``name`` for ``ctype`` in ``p`` (and the helpers it calls); return its C name."""
    for needed in _NEEDS.get(name, ()):
        helper(p, needed, ctype)
    if name in _UNTYPED:
        return p.helper(f"rl_{name}", _TEMPLATES[name])
    suffix = short_name(ctype)
    text = Template(_TEMPLATES[name]).substitute(T=ctype, s=suffix, m="f" if ctype == "float" else "")
    return p.helper(f"rl_{name}_{suffix}", text)
