// Special functions of the LDA kernels, in f32, branch-free (no loops: Mesa's llvmpipe counts every
// loop iteration of an invocation against one budget).

// scikit-learn's approximate digamma (`_online_lda_fast.psi`): six recurrence steps take any
// x > 1e-6 to y >= 6, then the asymptotic series; x <= 1e-6: -EULER - 1/x. CPU twin:
// `numerics::special::digamma_sklearn_with`.
fn digamma(x: f32) -> f32 {
    var y = x;
    var result = 0.0;
    let s0 = y < 6.0; result -= select(0.0, 1.0 / y, s0); y += select(0.0, 1.0, s0);
    let s1 = y < 6.0; result -= select(0.0, 1.0 / y, s1); y += select(0.0, 1.0, s1);
    let s2 = y < 6.0; result -= select(0.0, 1.0 / y, s2); y += select(0.0, 1.0, s2);
    let s3 = y < 6.0; result -= select(0.0, 1.0 / y, s3); y += select(0.0, 1.0, s3);
    let s4 = y < 6.0; result -= select(0.0, 1.0 / y, s4); y += select(0.0, 1.0, s4);
    let s5 = y < 6.0; result -= select(0.0, 1.0 / y, s5); y += select(0.0, 1.0, s5);
    let r = 1.0 / y;
    result += log(y) - 0.5 * r;
    let r2 = r * r;
    result -= r2 * ((1.0 / 12.0) - r2 * ((1.0 / 120.0) - r2 * (1.0 / 252.0)));
    return select(result, -0.5772157 - 1.0 / x, x <= 1e-6);
}

// ln Γ(x) for x > 0: seven steps of Γ(x + 1) = x·Γ(x) take x to y >= 7, then Stirling's series
// (truncation error below 1e-9 there). CPU twin: `numerics::special::ln_gamma` (libm).
fn ln_gamma(x: f32) -> f32 {
    var y = x;
    var p = 1.0;
    let s0 = y < 7.0; p *= select(1.0, y, s0); y += select(0.0, 1.0, s0);
    let s1 = y < 7.0; p *= select(1.0, y, s1); y += select(0.0, 1.0, s1);
    let s2 = y < 7.0; p *= select(1.0, y, s2); y += select(0.0, 1.0, s2);
    let s3 = y < 7.0; p *= select(1.0, y, s3); y += select(0.0, 1.0, s3);
    let s4 = y < 7.0; p *= select(1.0, y, s4); y += select(0.0, 1.0, s4);
    let s5 = y < 7.0; p *= select(1.0, y, s5); y += select(0.0, 1.0, s5);
    let s6 = y < 7.0; p *= select(1.0, y, s6); y += select(0.0, 1.0, s6);
    let r = 1.0 / y;
    let r2 = r * r;
    let series = r * ((1.0 / 12.0) - r2 * ((1.0 / 360.0) - r2 * (1.0 / 1260.0)));
    return (y - 0.5) * log(y) - y + 0.9189385332046727 + series - log(p);
}
