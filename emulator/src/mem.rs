//! Fallible allocation: every buffer whose size a caller decides (neurons, synapses, frames,
//! samples, trace rows) is reserved here, so that a request the machine cannot hold is an
//! [`Error::Memory`] naming it, never an abort of the process that embeds the emulator.

use crate::error::{Error, Result};

/// The error for `n` more items of `T` in `what`.
fn refused<T>(n: usize, what: &str) -> Error {
    Error::Memory {
        what: what.to_string(),
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    }
}

/// Room for `extra` more items in `v`.
pub fn reserve<T>(v: &mut Vec<T>, extra: usize, what: &str) -> Result<()> {
    v.try_reserve(extra).map_err(|_| refused::<T>(extra, what))
}

/// An empty vector with room for `n` items.
pub fn with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, n, what)?;
    Ok(v)
}

/// `n` copies of `value`.
pub fn filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// A copy of `items`.
pub fn copied<T: Copy>(items: &[T], what: &str) -> Result<Vec<T>> {
    let mut v = with_capacity(items.len(), what)?;
    v.extend_from_slice(items);
    Ok(v)
}

/// The `n` items of `iter` (`n` is what it yields; more are not taken).
pub fn collect<T>(n: usize, iter: impl IntoIterator<Item = T>, what: &str) -> Result<Vec<T>> {
    let mut v = with_capacity(n, what)?;
    v.extend(iter.into_iter().take(n));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_request_is_an_error_naming_it() {
        let e = filled(usize::MAX / 2, 0u64, "v_final").unwrap_err();
        match e {
            Error::Memory { what, bytes } => {
                assert_eq!(what, "v_final");
                assert_eq!(bytes, u64::MAX);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(filled(3, 7u8, "x").unwrap(), vec![7, 7, 7]);
        assert_eq!(collect(2, [1, 2, 3], "x").unwrap(), vec![1, 2]);
    }
}
