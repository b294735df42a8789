//! Randomness from the operating system's CSPRNG, wiped on drop. The only
//! source of secret bytes; it must not fall back to a weaker generator (a
//! failure is an error, never a default).

use zeroize::Zeroizing;

/// `N` random bytes from the OS, wiped from memory on drop.
pub fn secret_bytes<const N: usize>() -> anyhow::Result<Zeroizing<[u8; N]>> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(buf)
}
