//! The per-(pattern, component) quantities of EM with missing entries (Ghahramani & Jordan, 1994).
//!
//! For a pattern with observed columns `o` and missing columns `m`, component k's marginal on the
//! observed columns is `N(μ_o, Σ_oo)`, and given `x_o` the missing part is Gaussian with
//!
//! - `E[x_m | x_o] = μ_m + B (x_o − μ_o)`, `B = Σ_mo Σ_oo⁻¹`,
//! - `Cov[x_m | x_o] = C = Σ_mm − B Σ_om` (independent of `x_o`).
//!
//! Both are affine in `x_o`, so the statistics about `μ` of the completed rows follow exactly from
//! the ordinary statistics of the observed sub-rows about `μ_o` ([`expand`]): with `u = x_o − μ_o`,
//! `x̂ − μ = [u; B u]`, hence `S1 = [S1_o; B S1_o]`, `S2_oo = S2_o`, `S2_mo = B S2_o`,
//! `S2_mm = B S2_o Bᵀ + S0·C`. Diagonal and spherical covariances have `B = 0`.

use super::super::params::LN_2PI;
use super::super::{CovarianceType, GmmParams, GmmStats, Prepared};
use super::index::Pattern;
use crate::error::{Error, Result};

/// The covariance matrices of `p` as full D×D matrices (row-major): K of them, one for tied.
/// Diagonal and spherical covariances become diagonal matrices. Recovered from the Cholesky
/// factor of the precision: `Σ = U⁻ᵀ U⁻¹`.
pub(crate) fn covariance_matrices(p: &Prepared) -> Vec<f64> {
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

/// The factors of one pattern for one covariance matrix.
#[derive(Debug, Clone)]
pub(crate) struct Factor {
    /// Lower Cholesky factor of `Σ_oo`, `[d_o][d_o]`.
    pub l: Vec<f64>,
    /// `Σ ln L_ii` (= ½ log det Σ_oo).
    pub half_log_det: f64,
    /// `B = Σ_mo Σ_oo⁻¹`, `[m][d_o]`.
    pub b: Vec<f64>,
    /// `C = Σ_mm − B Σ_om`, `[m][m]`.
    pub c: Vec<f64>,
}

/// Everything a pattern needs under one set of parameters.
pub(crate) struct PatternFactors {
    /// One per covariance matrix (K; one for tied).
    pub factors: Vec<Factor>,
    /// `μ_o` per component, `[K][d_o]`.
    pub mu_o: Vec<f64>,
    /// `μ_m` per component, `[K][m]`.
    pub mu_m: Vec<f64>,
    tied: bool,
}

impl PatternFactors {
    /// The factors of `pattern` under `p` with covariances `cov` ([`covariance_matrices`]).
    pub fn new(p: &Prepared, cov: &[f64], pattern: &Pattern) -> Result<Self> {
        let (k, d) = (p.n_components, p.n_features);
        let (o, m) = (&pattern.observed, &pattern.missing);
        let (d_o, d_m) = (o.len(), m.len());
        let tied = p.covariance_type == CovarianceType::Tied;
        let mats = cov.len() / (d * d);
        let mut factors = Vec::with_capacity(mats);
        for c in 0..mats {
            let s = &cov[c * d * d..(c + 1) * d * d];
            let mut l = vec![0.0; d_o * d_o];
            for (a, &i) in o.iter().enumerate() {
                for (b, &j) in o.iter().enumerate().take(a + 1) {
                    l[a * d_o + b] = s[i * d + j];
                }
            }
            cholesky_lower_in_place(&mut l, d_o).map_err(|pivot| Error::IllConditioned {
                component: c,
                pivot,
                reg_covar: 0.0,
            })?;
            let half_log_det = (0..d_o).map(|a| l[a * d_o + a].ln()).sum();
            // W = L⁻¹ Σ_om ([d_o][m]); C = Σ_mm − Wᵀ W; Bᵀ = L⁻ᵀ W.
            let mut w = vec![0.0; d_o * d_m];
            for (col, &jm) in m.iter().enumerate() {
                for (a, &i) in o.iter().enumerate() {
                    let mut t = s[i * d + jm];
                    for b in 0..a {
                        t -= l[a * d_o + b] * w[b * d_m + col];
                    }
                    w[a * d_m + col] = t / l[a * d_o + a];
                }
            }
            let mut cm = vec![0.0; d_m * d_m];
            for (a, &i) in m.iter().enumerate() {
                for (b, &j) in m.iter().enumerate() {
                    let wtw: f64 = (0..d_o).map(|r| w[r * d_m + a] * w[r * d_m + b]).sum();
                    cm[a * d_m + b] = s[i * d + j] - wtw;
                }
            }
            let mut bt = w; // solved in place: Bᵀ = L⁻ᵀ W, back substitution per column.
            for col in 0..d_m {
                for a in (0..d_o).rev() {
                    let mut t = bt[a * d_m + col];
                    for b in a + 1..d_o {
                        t -= l[b * d_o + a] * bt[b * d_m + col];
                    }
                    bt[a * d_m + col] = t / l[a * d_o + a];
                }
            }
            let mut bm = vec![0.0; d_m * d_o];
            for a in 0..d_o {
                for col in 0..d_m {
                    bm[col * d_o + a] = bt[a * d_m + col];
                }
            }
            factors.push(Factor {
                l,
                half_log_det,
                b: bm,
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
            tied,
        })
    }

    /// The factor of component `c`.
    pub fn factor(&self, c: usize) -> &Factor {
        &self.factors[if self.tied { 0 } else { c }]
    }

    /// `log p(x_o, k)` for every component of one observed sub-row `x` (`out`: `[K]`), and
    /// `u_k = x_o − μ_ko` into `u` (`[K][d_o]`); `z` is scratch (`[d_o]`).
    pub fn log_joint(
        &self,
        p: &Prepared,
        x: &[f64],
        out: &mut [f64],
        u: &mut [f64],
        z: &mut [f64],
    ) {
        let d_o = x.len();
        for (c, o) in out.iter_mut().enumerate() {
            let f = self.factor(c);
            let uc = &mut u[c * d_o..(c + 1) * d_o];
            for a in 0..d_o {
                uc[a] = x[a] - self.mu_o[c * d_o + a];
            }
            let mut q = 0.0;
            for a in 0..d_o {
                let row = &f.l[a * d_o..a * d_o + a];
                let t: f64 = row.iter().zip(&z[..a]).map(|(l, z)| l * z).sum();
                z[a] = (uc[a] - t) / f.l[a * d_o + a];
                q += z[a] * z[a];
            }
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
