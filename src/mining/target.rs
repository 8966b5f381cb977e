//! Targets: from a header's compact nBits, or typed in full; converted to kernel words by `hash::KernelTarget`.

use bitcoin::{CompactTarget, Target};

/// A target the user typed that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target is not hex: {0}")]
    NotHex(String),
    #[error("target must be at most 64 hex digits (256 bits), got {0}")]
    TooLong(usize),
    #[error("nBits must be 8 hex digits, got {0:?}")]
    BadBits(String),
    #[error("nBits {0:08x} encodes a negative target")]
    NegativeBits(u32),
    #[error("nBits {0:08x} encodes a target above 2^256")]
    OverflowBits(u32),
}

/// The target a compact nBits value encodes.
///
/// # Errors
/// A negative or overflowing encoding.
pub fn from_bits(bits: u32) -> Result<Target, TargetError> {
    let exponent = bits >> 24;
    let mantissa = bits & 0x007f_ffff;
    if bits & 0x0080_0000 != 0 && mantissa != 0 {
        return Err(TargetError::NegativeBits(bits));
    }
    let mantissa_bytes = match mantissa {
        0 => 0,
        m if m <= 0xff => 1,
        m if m <= 0xffff => 2,
        _ => 3,
    };
    // The value is mantissa * 256^(exponent - 3): it overflows past 32 significant bytes.
    if mantissa != 0 && exponent > 3 && mantissa_bytes + exponent - 3 > 32 {
        return Err(TargetError::OverflowBits(bits));
    }
    Ok(Target::from_compact(CompactTarget::from_consensus(bits)))
}

/// Parses nBits as hex (`1d00ffff`, with or without `0x`).
///
/// # Errors
/// Text that is not 8 hex digits, or a negative or overflowing encoding.
pub fn parse_bits(text: &str) -> Result<Target, TargetError> {
    let digits = text.trim().trim_start_matches("0x");
    if digits.len() != 8 {
        return Err(TargetError::BadBits(text.to_owned()));
    }
    let bits =
        u32::from_str_radix(digits, 16).map_err(|_| TargetError::BadBits(text.to_owned()))?;
    from_bits(bits)
}

/// Parses a full target written as a number in hex, most significant digit first (the way
/// block hashes are shown); shorter text is a smaller number.
///
/// # Errors
/// Non-hex text or more than 256 bits.
pub fn parse_target(text: &str) -> Result<Target, TargetError> {
    let digits = text.trim().trim_start_matches("0x");
    if digits.len() > 64 {
        return Err(TargetError::TooLong(digits.len()));
    }
    let padded = format!("{digits:0>64}");
    let bytes = hex::decode(&padded).map_err(|e| TargetError::NotHex(e.to_string()))?;
    Ok(Target::from_be_bytes(
        bytes.try_into().expect("64 hex digits"),
    ))
}

/// The target shown as 64 hex digits, most significant first.
#[must_use]
pub fn display(target: Target) -> String {
    hex::encode(target.to_be_bytes())
}
