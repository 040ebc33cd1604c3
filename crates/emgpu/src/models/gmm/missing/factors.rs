//! The per-(pattern, component) quantities of EM with missing entries (Ghahramani & Jordan, 1994).
//!
//! For a pattern with observed columns `o` and missing columns `m`, component k's marginal on the
//! observed columns is `N(μ_o, Σ_oo)`, and given `x_o` the missing part is Gaussian with
//!
//! - `E[x_m | x_o] = μ_m + B (x_o − μ_o)`, `B = Σ_mo Σ_oo⁻¹`,
//! - `Cov[x_m | x_o] = C = Σ_mm − B Σ_om` (independent of `x_o`).
//!
//! Both are affine in `x_o`, so the statistics about `μ` of the completed rows follow exactly from
//! the ordinary statistics of the observed sub-rows about `μ_o` (`expand`): with `u = x_o − μ_o`,
//! `x̂ − μ = [u; B u]`, hence `S1 = [S1_o; B S1_o]`, `S2_oo = S2_o`, `S2_mo = B S2_o`,
//! `S2_mm = B S2_o Bᵀ + S0·C`. Diagonal and spherical covariances have `B = 0`.

use super::super::params::LN_2PI;
use super::super::{CovarianceType, GmmParams, GmmStats, Prepared};
use super::index::Pattern;
use crate::error::{Error, Result};

/// The covariance matrices of `p` as full D×D matrices (row-major): K of them, one for tied.
/// Diagonal and spherical covariances become diagonal matrices. Recovered from the Cholesky
/// factor of the precision: `Σ = U⁻ᵀ U⁻¹`.
fn covariance_matrices(p: &Prepared) -> Vec<f64> {
    let (k, d) = (p.n_components, p.n_features);
    match p.covariance_type {
        CovarianceType::Full | CovarianceType::Tied => {
            let mats = if p.covariance_type == CovarianceType::Tied {
                1
            } else {
                k
            };
            let mut out = vec![0.0; mats * d * d];
            for c in 0..mats {
                let u = &p.prec_chol[c * d * d..(c + 1) * d * d];
                // V = U⁻¹ (upper triangular), by back substitution column by column.
                let mut v = vec![0.0; d * d];
                for col in 0..d {
                    for i in (0..=col).rev() {
                        let mut s = if i == col { 1.0 } else { 0.0 };
                        for j in i + 1..=col {
                            s -= u[i * d + j] * v[j * d + col];
                        }
                        v[i * d + col] = s / u[i * d + i];
                    }
                }
                // P = U Uᵀ, so Σ = P⁻¹ = U⁻ᵀ U⁻¹ = Vᵀ V.
                let m = &mut out[c * d * d..(c + 1) * d * d];
                for i in 0..d {
                    for j in 0..=i {
                        // (Vᵀ V)_ij = Σ_r V_ri V_rj, V upper: r ≤ min(i, j).
                        let s: f64 = (0..=j).map(|r| v[r * d + i] * v[r * d + j]).sum();
                        m[i * d + j] = s;
                        m[j * d + i] = s;
                    }
                }
            }
            out
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let mut out = vec![0.0; k * d * d];
            for c in 0..k {
                for j in 0..d {
                    let pc = match p.covariance_type {
                        CovarianceType::Diag => p.prec_chol[c * d + j],
                        _ => p.prec_chol[c],
                    };
                    out[c * d * d + j * d + j] = 1.0 / (pc * pc);
                }
            }
            out
        }
    }
}

/// What every pattern's factors read, computed once per E-step from the parameters: the
/// covariance matrices, and the precision matrices `Λ = U Uᵀ` with their Cholesky factors `U`
/// (upper), all as full D×D matrices (K of them; one for tied).
pub(crate) struct Shared {
    /// Covariances ([`covariance_matrices`]).
    pub cov: Vec<f64>,
    /// `U` per matrix (upper triangular, row-major).
    pub(crate) u: Vec<f64>,
    /// `Λ = U Uᵀ` per matrix.
    pub(crate) lam: Vec<f64>,
    /// `log det U` per matrix.
    pub(crate) log_det_u: Vec<f64>,
}

impl Shared {
    /// The shared inputs of `p`.
    pub fn new(p: &Prepared) -> Self {
        let (k, d) = (p.n_components, p.n_features);
        let mats = if p.covariance_type == CovarianceType::Tied {
            1
        } else {
            k
        };
        let mut u = vec![0.0; mats * d * d];
        for c in 0..mats {
            let m = &mut u[c * d * d..(c + 1) * d * d];
            match p.covariance_type {
                CovarianceType::Full | CovarianceType::Tied => {
                    m.copy_from_slice(&p.prec_chol[c * d * d..(c + 1) * d * d]);
                }
                CovarianceType::Diag => (0..d).for_each(|j| m[j * d + j] = p.prec_chol[c * d + j]),
                CovarianceType::Spherical => (0..d).for_each(|j| m[j * d + j] = p.prec_chol[c]),
            }
        }
        let mut lam = vec![0.0; mats * d * d];
        for c in 0..mats {
            let uc = &u[c * d * d..(c + 1) * d * d];
            let lc = &mut lam[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                for j in 0..=i {
                    // (U Uᵀ)_ij = Σ_r U_ir U_jr, U upper: r ≥ max(i, j) = i.
                    let v: f64 = (i..d).map(|r| uc[i * d + r] * uc[j * d + r]).sum();
                    lc[i * d + j] = v;
                    lc[j * d + i] = v;
                }
            }
        }
        Self {
            cov: covariance_matrices(p),
            u,
            lam,
            log_det_u: p.log_det[..mats].to_vec(),
        }
    }
}

/// The factors of one pattern for one covariance matrix.
#[derive(Debug, Clone)]
pub(crate) struct Factor {
    /// `½ log det Σ_oo = −log det U + ½ log det Λ_mm` (Σ_oo's Schur complement in Σ is Λ_mm⁻¹).
    pub half_log_det: f64,
    /// `B = Σ_mo Σ_oo⁻¹ = −Λ_mm⁻¹ Λ_mo`, `[m][d_o]`.
    pub b: Vec<f64>,
    /// `C = Σ_mm − B Σ_om = Λ_mm⁻¹`, `[m][m]`.
    pub c: Vec<f64>,
}

/// Everything a pattern needs under one set of parameters.
///
/// Factored through the precision: only the m×m block `Λ_mm` is factored per (pattern,
/// component), O(m³ + m²·d_o), so that many small patterns with few missing entries cost little;
/// the Mahalanobis term of `x_o` under the marginal is that of the completed row
/// `x̂ = [x_o; μ_m + B u]` under the full precision (`x̂_m` minimizes the quadratic over `x_m`):
/// `‖(x̂ − μ)ᵀ U‖²`.
pub(crate) struct PatternFactors<'s> {
    /// One per covariance matrix (K; one for tied).
    pub factors: Vec<Factor>,
    /// `μ_o` per component, `[K][d_o]`.
    pub mu_o: Vec<f64>,
    /// `μ_m` per component, `[K][m]`.
    pub mu_m: Vec<f64>,
    shared: &'s Shared,
    observed: &'s [usize],
    missing: &'s [usize],
    d: usize,
    tied: bool,
}

impl<'s> PatternFactors<'s> {
    /// The factors of `pattern` under `p` ([`Shared`] computed from `p`).
    pub fn new(p: &Prepared, shared: &'s Shared, pattern: &'s Pattern) -> Result<Self> {
        let (k, d) = (p.n_components, p.n_features);
        let (o, m) = (&pattern.observed, &pattern.missing);
        let (d_o, d_m) = (o.len(), m.len());
        let tied = p.covariance_type == CovarianceType::Tied;
        let mats = shared.log_det_u.len();
        let mut factors = Vec::with_capacity(mats);
        for c in 0..mats {
            let lam = &shared.lam[c * d * d..(c + 1) * d * d];
            let mut l = vec![0.0; d_m * d_m];
            for (a, &i) in m.iter().enumerate() {
                for (bb, &j) in m.iter().enumerate().take(a + 1) {
                    l[a * d_m + bb] = lam[i * d + j];
                }
            }
            cholesky_lower_in_place(&mut l, d_m).map_err(|pivot| Error::IllConditioned {
                component: c,
                pivot,
                reg_covar: 0.0,
            })?;
            let half_log_det_m: f64 = (0..d_m).map(|a| l[a * d_m + a].ln()).sum();
            // Solves L Lᵀ y = rhs in place.
            let solve = |y: &mut [f64]| {
                for a in 0..d_m {
                    let t: f64 = (0..a).map(|r| l[a * d_m + r] * y[r]).sum();
                    y[a] = (y[a] - t) / l[a * d_m + a];
                }
                for a in (0..d_m).rev() {
                    let t: f64 = (a + 1..d_m).map(|r| l[r * d_m + a] * y[r]).sum();
                    y[a] = (y[a] - t) / l[a * d_m + a];
                }
            };
            let mut b = vec![0.0; d_m * d_o];
            let mut y = vec![0.0; d_m];
            for (col, &j) in o.iter().enumerate() {
                for (a, &i) in m.iter().enumerate() {
                    y[a] = -lam[i * d + j];
                }
                solve(&mut y);
                for a in 0..d_m {
                    b[a * d_o + col] = y[a];
                }
            }
            let mut cm = vec![0.0; d_m * d_m];
            for col in 0..d_m {
                y.fill(0.0);
                y[col] = 1.0;
                solve(&mut y);
                for a in 0..d_m {
                    cm[a * d_m + col] = y[a];
                }
            }
            // Exactly symmetric.
            for a in 0..d_m {
                for bb in 0..a {
                    let v = 0.5 * (cm[a * d_m + bb] + cm[bb * d_m + a]);
                    cm[a * d_m + bb] = v;
                    cm[bb * d_m + a] = v;
                }
            }
            factors.push(Factor {
                half_log_det: -shared.log_det_u[c] + half_log_det_m,
                b,
                c: cm,
            });
        }
        let mut mu_o = vec![0.0; k * d_o];
        let mut mu_m = vec![0.0; k * d_m];
        for c in 0..k {
            let mu = &p.means[c * d..(c + 1) * d];
            for (a, &j) in o.iter().enumerate() {
                mu_o[c * d_o + a] = mu[j];
            }
            for (a, &j) in m.iter().enumerate() {
                mu_m[c * d_m + a] = mu[j];
            }
        }
        Ok(Self {
            factors,
            mu_o,
            mu_m,
            shared,
            observed: o,
            missing: m,
            d,
            tied,
        })
    }

    fn mat(&self, c: usize) -> usize {
        if self.tied { 0 } else { c }
    }

    /// The factor of component `c`.
    pub fn factor(&self, c: usize) -> &Factor {
        &self.factors[self.mat(c)]
    }

    /// `log p(x_o, k)` for every component of one observed sub-row `x` (`out`: `[K]`), and
    /// `u_k = x_o − μ_ko` into `u` (`[K][d_o]`); `z` is scratch (`[2·D]`).
    pub fn log_joint(
        &self,
        p: &Prepared,
        x: &[f64],
        out: &mut [f64],
        u: &mut [f64],
        z: &mut [f64],
    ) {
        let (d, d_o) = (self.d, x.len());
        let (w, z) = z.split_at_mut(d);
        for (c, o) in out.iter_mut().enumerate() {
            let f = self.factor(c);
            let uc = &mut u[c * d_o..(c + 1) * d_o];
            for ((v, x), m) in uc.iter_mut().zip(x).zip(&self.mu_o[c * d_o..(c + 1) * d_o]) {
                *v = x - m;
            }
            // w = x̂ − μ: u on the observed columns, B u on the missing ones.
            for (a, &j) in self.observed.iter().enumerate() {
                w[j] = uc[a];
            }
            for (a, &j) in self.missing.iter().enumerate() {
                w[j] = f.b[a * d_o..(a + 1) * d_o]
                    .iter()
                    .zip(uc.iter())
                    .map(|(b, u)| b * u)
                    .sum();
            }
            // z = wᵀ U, as a sum of rows of U (contiguous: vectorizes).
            let um = &self.shared.u[self.mat(c) * d * d..(self.mat(c) + 1) * d * d];
            z.fill(0.0);
            for a in 0..d {
                let wa = w[a];
                for (zj, uij) in z[a..].iter_mut().zip(&um[a * d + a..(a + 1) * d]) {
                    *zj += wa * uij;
                }
            }
            let q: f64 = z.iter().map(|v| v * v).sum();
            *o = p.log_weights[c] - 0.5 * (d_o as f64 * LN_2PI + q) - f.half_log_det;
        }
    }
}

/// The lower Cholesky factor of the symmetric `a` (`[d][d]`, lower triangle read) in place; the
/// upper triangle is zeroed. Err(pivot) on a non-positive pivot.
pub(crate) fn cholesky_lower_in_place(a: &mut [f64], d: usize) -> std::result::Result<(), f64> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for p in 0..j {
            s -= a[j * d + p] * a[j * d + p];
        }
        if !(s > 0.0 && s.is_finite()) {
            return Err(s);
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut t = a[i * d + j];
            for p in 0..j {
                t -= a[i * d + p] * a[j * d + p];
            }
            a[i * d + j] = t / l;
        }
        for i in 0..j {
            a[i * d + j] = 0.0;
        }
    }
    Ok(())
}

/// The mixture's marginal on the columns `observed` as prepared E-step parameters (weights
/// unchanged, `log_weights` copied bit for bit).
pub(crate) fn marginal_prepared(p: &Prepared, cov: &[f64], observed: &[usize]) -> Result<Prepared> {
    let (k, d, d_o) = (p.n_components, p.n_features, observed.len());
    let ct = p.covariance_type;
    let mut means = vec![0.0; k * d_o];
    for c in 0..k {
        for (a, &j) in observed.iter().enumerate() {
            means[c * d_o + a] = p.means[c * d + j];
        }
    }
    let sub = |c: usize| -> Vec<f64> {
        let s = &cov[c * d * d..(c + 1) * d * d];
        let mut out = vec![0.0; d_o * d_o];
        for (a, &i) in observed.iter().enumerate() {
            for (b, &j) in observed.iter().enumerate() {
                out[a * d_o + b] = s[i * d + j];
            }
        }
        out
    };
    let covariances: Vec<f64> = match ct {
        CovarianceType::Full => (0..k).flat_map(sub).collect(),
        CovarianceType::Tied => sub(0),
        CovarianceType::Diag => (0..k)
            .flat_map(|c| observed.iter().map(move |&j| cov[c * d * d + j * d + j]))
            .collect(),
        CovarianceType::Spherical => (0..k).map(|c| cov[c * d * d]).collect(),
    };
    let weights = p.log_weights.iter().map(|w| w.exp()).collect();
    let mut out = GmmParams::from_parts(ct, weights, means, covariances, d_o).prepare()?;
    out.log_weights.clone_from(&p.log_weights);
    if ct == CovarianceType::Spherical {
        // The spherical factor is 1/σ from the same variance; keep the exact value.
        for c in 0..k {
            out.prec_chol[c] = p.prec_chol[c];
            out.log_det[c] = d_o as f64 * p.prec_chol[c].ln();
        }
    } else if ct == CovarianceType::Diag {
        for c in 0..k {
            let mut ld = 0.0;
            for (a, &j) in observed.iter().enumerate() {
                out.prec_chol[c * d_o + a] = p.prec_chol[c * d + j];
                ld += p.prec_chol[c * d + j].ln();
            }
            out.log_det[c] = ld;
        }
    }
    Ok(out)
}

/// Adds the statistics of a pattern's observed sub-rows (`s0` `[K]`, `s1` `[K][d_o]`, `s2`
/// `[K][d_o][d_o]` symmetric or `[K][d_o]` for diagonal types; all about `μ_o`) to `acc` (about
/// `μ`), completed with the conditional moments (see the module docs).
pub(crate) fn expand(
    acc: &mut GmmStats,
    pattern: &Pattern,
    f: &PatternFactors,
    s0: &[f64],
    s1: &[f64],
    s2: &[f64],
) {
    let d = acc.n_features;
    let (o, m) = (&pattern.observed, &pattern.missing);
    let (d_o, d_m) = (o.len(), m.len());
    let full = acc.has_full_s2();
    let mut bs = vec![0.0; d_m * d_o];
    for (c, &r0) in s0.iter().enumerate() {
        acc.s0[c] += r0;
        let fc = f.factor(c);
        let s1o = &s1[c * d_o..(c + 1) * d_o];
        let a1 = &mut acc.s1[c * d..(c + 1) * d];
        for (a, &j) in o.iter().enumerate() {
            a1[j] += s1o[a];
        }
        for (a, &j) in m.iter().enumerate() {
            let brow = &fc.b[a * d_o..(a + 1) * d_o];
            a1[j] += brow.iter().zip(s1o).map(|(b, s)| b * s).sum::<f64>();
        }
        if full {
            let so = &s2[c * d_o * d_o..(c + 1) * d_o * d_o];
            let a2 = &mut acc.s2[c * d * d..(c + 1) * d * d];
            for (a, &i) in o.iter().enumerate() {
                for (b, &j) in o.iter().enumerate() {
                    a2[i * d + j] += so[a * d_o + b];
                }
            }
            if d_m == 0 {
                continue;
            }
            // BS = B·S2_o ([m][d_o]).
            for a in 0..d_m {
                for b in 0..d_o {
                    bs[a * d_o + b] = (0..d_o).map(|r| fc.b[a * d_o + r] * so[r * d_o + b]).sum();
                }
            }
            for (a, &i) in m.iter().enumerate() {
                for (b, &j) in o.iter().enumerate() {
                    let v = bs[a * d_o + b];
                    a2[i * d + j] += v;
                    a2[j * d + i] += v;
                }
                for (b, &j) in m.iter().enumerate() {
                    let bsb: f64 = (0..d_o).map(|r| bs[a * d_o + r] * fc.b[b * d_o + r]).sum();
                    a2[i * d + j] += bsb + r0 * fc.c[a * d_m + b];
                }
            }
        } else {
            let so = &s2[c * d_o..(c + 1) * d_o];
            let a2 = &mut acc.s2[c * d..(c + 1) * d];
            for (a, &j) in o.iter().enumerate() {
                a2[j] += so[a];
            }
            // Diagonal types: B = 0, C = diag(σ²_m).
            for (a, &j) in m.iter().enumerate() {
                a2[j] += r0 * fc.c[a * d_m + a];
            }
        }
    }
}
