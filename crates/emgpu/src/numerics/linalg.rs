//! Small dense helpers on the host, in f64, built on faer.
//!
//! The M-step and the parameter preparation work on D×D matrices (D is the number of features):
//! the Cholesky factor of each covariance, its triangular inverse (the Cholesky factor of the
//! precision, as scikit-learn stores it in `precisions_cholesky_`) and log-determinants.
//! Matrices here are dense, row-major `&[f64]` of length `d * d`.

use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Mat, MatRef, Par, Side};

/// Why a covariance could not be factored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotPositiveDefinite {
    /// The value on the diagonal at the failing pivot (at most 0, or not finite).
    pub pivot: f64,
}

/// The Cholesky factor of the precision matrix of `cov` (row-major d×d, symmetric).
///
/// With `cov = L·Lᵀ` (L lower triangular), returns the upper-triangular `U = L⁻ᵀ` (row-major),
/// so that the precision is `P = cov⁻¹ = U·Uᵀ` and `‖(x − μ)ᵀ·U‖² = (x − μ)ᵀ·P·(x − μ)`; this is
/// scikit-learn's `precisions_cholesky_` for one component. Also returns `log det U = −½ log det cov`.
pub fn precision_cholesky(cov: &[f64], d: usize) -> Result<(Vec<f64>, f64), NotPositiveDefinite> {
    debug_assert_eq!(cov.len(), d * d);
    if let Some(bad) = cov.iter().find(|v| !v.is_finite()) {
        return Err(NotPositiveDefinite { pivot: *bad });
    }
    let a = MatRef::from_row_major_slice(cov, d, d);
    let llt = match a.llt(Side::Lower) {
        Ok(llt) => llt,
        Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => {
            return Err(NotPositiveDefinite {
                pivot: pivot_value(cov, d, index),
            });
        }
    };
    let l = llt.L();
    let mut linv = Mat::<f64>::zeros(d, d);
    invert_lower_triangular(linv.as_mut(), l, Par::Seq);
    // U = L⁻ᵀ: U[i][j] = Linv[j][i] for j ≥ i.
    let mut u = vec![0.0; d * d];
    let mut log_det = 0.0;
    for i in 0..d {
        for j in i..d {
            u[i * d + j] = linv[(j, i)];
        }
        log_det += u[i * d + i].ln();
    }
    Ok((u, log_det))
}

/// The lower-triangular Cholesky factor `L` of `cov = L·Lᵀ` (row-major d×d), for sampling.
pub fn cholesky_lower(cov: &[f64], d: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    let a = MatRef::from_row_major_slice(cov, d, d);
    let llt = a.llt(Side::Lower).map_err(|e| match e {
        faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
            NotPositiveDefinite {
                pivot: pivot_value(cov, d, index),
            }
        }
    })?;
    let l = llt.L();
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            out[i * d + j] = l[(i, j)];
        }
    }
    Ok(out)
}

/// The Schur-complement pivot at `index` of an unblocked Cholesky of `cov`, for error messages.
fn pivot_value(cov: &[f64], d: usize, index: usize) -> f64 {
    // Recompute the factor up to `index` with the textbook recurrence: only used to report a number.
    let mut l = vec![0.0; d * d];
    for j in 0..=index.min(d - 1) {
        let mut diag = cov[j * d + j];
        for p in 0..j {
            diag -= l[j * d + p] * l[j * d + p];
        }
        if j == index || diag <= 0.0 || !diag.is_finite() {
            return diag;
        }
        let ljj = diag.sqrt();
        l[j * d + j] = ljj;
        for i in (j + 1)..d {
            let mut s = cov[i * d + j];
            for p in 0..j {
                s -= l[i * d + p] * l[j * d + p];
            }
            l[i * d + j] = s / ljj;
        }
    }
    f64::NAN
}

/// `log det` of an upper-triangular factor given by its diagonal.
pub fn log_det_diag(diag: impl IntoIterator<Item = f64>) -> f64 {
    diag.into_iter().map(f64::ln).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
        let mut c = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] = (0..d).map(|p| a[i * d + p] * b[p * d + j]).sum();
            }
        }
        c
    }

    #[test]
    fn precision_cholesky_inverts_covariance() {
        let d = 3;
        let cov = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let (u, log_det) = precision_cholesky(&cov, d).unwrap();
        for i in 0..d {
            for j in 0..i {
                assert_eq!(u[i * d + j], 0.0, "U must be upper triangular");
            }
        }
        // P = U Uᵀ must be cov⁻¹: cov · P = I.
        let mut ut = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                ut[i * d + j] = u[j * d + i];
            }
        }
        let p = matmul(&u, &ut, d);
        let id = matmul(&cov, &p, d);
        for i in 0..d {
            for j in 0..d {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((id[i * d + j] - want).abs() < 1e-12, "{id:?}");
            }
        }
        // det(cov) = 4*(6-0.04) - 1*(2-0.1) + 0.5*(0.2-1.5) = 23.84 - 1.9 - 0.65 = 21.29
        assert!((log_det - (-0.5 * 21.29f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn non_positive_definite_is_an_error_with_the_pivot() {
        let cov = [1.0, 2.0, 2.0, 1.0];
        let err = precision_cholesky(&cov, 2).unwrap_err();
        assert!((err.pivot - (-3.0)).abs() < 1e-12, "{err:?}");
        let err = precision_cholesky(&[f64::NAN], 1).unwrap_err();
        assert!(err.pivot.is_nan());
        assert!(precision_cholesky(&[0.0], 1).is_err());
    }
}
