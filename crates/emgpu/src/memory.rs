//! Memory checked before it is used: sizes that come from a user (a number of samples, a number
//! of features, a model's shape) are multiplied with overflow checks and asked of the allocator
//! with `try_reserve`, so a request too large for the machine is an [`Error::OutOfMemory`] that
//! gives the numbers, never an abort ("memory allocation failed") or a capacity-overflow panic.
//!
//! A reservation that succeeds is not a promise (an overcommitting system can still run out when
//! the pages are touched), but every request larger than the machine's memory and swap is caught.

use crate::error::{Error, Result};

/// `a × b × ...` bytes, or `None` when the product overflows.
pub(crate) fn bytes_of(factors: &[usize]) -> Option<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .filter(|&b| b <= isize::MAX as usize)
}

/// A byte count for people: "1.6 TB", "512 MB".
pub(crate) fn human_bytes(bytes: Option<usize>) -> String {
    let Some(b) = bytes else {
        return "more bytes than a 64-bit address space holds".into();
    };
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Checks that `bytes` (from [`bytes_of`]) can be allocated now, by reserving and releasing
/// them. `what` says what needs them and what to do, e.g. "drawing 10 samples × 2 features
/// (float64); draw fewer".
pub(crate) fn ensure_available(bytes: Option<usize>, what: impl FnOnce() -> String) -> Result<()> {
    let ok = bytes.is_some_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if ok {
        Ok(())
    } else {
        Err(out_of_memory(bytes, what))
    }
}

/// A zero-filled vector of `len` elements, or [`Error::OutOfMemory`] (with `what`) when it
/// cannot be allocated.
pub(crate) fn try_zeroed<T: Clone + Default>(
    len: usize,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>> {
    let bytes = bytes_of(&[len, std::mem::size_of::<T>()]);
    let mut v = Vec::new();
    if bytes.is_none() || v.try_reserve_exact(len).is_err() {
        return Err(out_of_memory(bytes, what));
    }
    v.resize(len, T::default());
    Ok(v)
}

fn out_of_memory(bytes: Option<usize>, what: impl FnOnce() -> String) -> Error {
    let what = what();
    match what.split_once("; ") {
        Some((need, todo)) => {
            Error::OutOfMemory(format!("{need}: {} needed; {todo}", human_bytes(bytes)))
        }
        None => Error::OutOfMemory(format!("{what}: {} needed", human_bytes(bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_and_impossible_sizes_are_errors_with_the_numbers() {
        assert_eq!(bytes_of(&[3, 4, 8]), Some(96));
        assert_eq!(bytes_of(&[usize::MAX, 2]), None);
        let err = try_zeroed::<f64>(usize::MAX / 2, || "a test; ask for less".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a test: more bytes than") && err.ends_with("ask for less"));
        let err = ensure_available(bytes_of(&[1 << 50, 8]), || "a big thing".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a big thing: 9.0 PB needed"), "{err}");
        assert_eq!(try_zeroed::<f32>(3, String::new).unwrap(), vec![0.0; 3]);
        assert!(ensure_available(bytes_of(&[1000, 8]), String::new).is_ok());
    }
}
