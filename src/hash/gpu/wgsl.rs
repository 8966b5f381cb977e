//! Builds kernel sources: each `shaders/*.wgsl` kernel is joined with fully unrolled SHA-1 and
//! SHA-256 compression functions generated here. Unrolling is not optional: lavapipe stops an
//! invocation after 65,535 loop iterations and then returns wrong data without an error, and the
//! unrolled code is also far faster everywhere.

use std::fmt::Write as _;

use crate::hash::cpu::sha256d::K as SHA256_K;

const PRELUDE: &str = "
fn rotr(x: u32, n: u32) -> u32 { return (x >> n) | (x << (32u - n)); }
fn rotl(x: u32, n: u32) -> u32 { return (x << n) | (x >> (32u - n)); }
fn bswap(x: u32) -> u32 {
    return (x << 24u) | ((x << 8u) & 0x00ff0000u) | ((x >> 8u) & 0x0000ff00u) | (x >> 24u);
}
fn bsig0(x: u32) -> u32 { return rotr(x, 2u) ^ rotr(x, 13u) ^ rotr(x, 22u); }
fn bsig1(x: u32) -> u32 { return rotr(x, 6u) ^ rotr(x, 11u) ^ rotr(x, 25u); }
fn ssig0(x: u32) -> u32 { return rotr(x, 7u) ^ rotr(x, 18u) ^ (x >> 3u); }
fn ssig1(x: u32) -> u32 { return rotr(x, 17u) ^ rotr(x, 19u) ^ (x >> 10u); }
fn ch(x: u32, y: u32, z: u32) -> u32 { return z ^ (x & (y ^ z)); }
fn maj(x: u32, y: u32, z: u32) -> u32 { return (x & y) | (z & (x | y)); }
";

/// The shared helpers alone (rotates, byte swap, the SHA-256 round functions).
pub(super) fn prelude() -> &'static str {
    PRELUDE
}

/// `fn sha256_compress(state: array<u32, 8>, block: array<u32, 16>) -> array<u32, 8>`,
/// the 64 rounds unrolled with registers renamed instead of shuffled.
fn sha256_compress() -> String {
    let mut src = String::from(
        "fn sha256_compress(state: array<u32, 8>, block: array<u32, 16>) -> array<u32, 8> {\n",
    );
    for i in 0..16 {
        let _ = writeln!(src, "    var w{i} = block[{i}];");
    }
    let mut regs = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for (i, reg) in regs.iter().enumerate() {
        let _ = writeln!(src, "    var {reg} = state[{i}];");
    }
    for (round, k) in SHA256_K.iter().enumerate() {
        let w = round % 16;
        if round >= 16 {
            let _ = writeln!(
                src,
                "    w{w} = ssig1(w{}) + w{} + ssig0(w{}) + w{w};",
                (round + 14) % 16,
                (round + 9) % 16,
                (round + 1) % 16
            );
        }
        let [a, b, c, d, e, f, g, h] = regs;
        let _ = writeln!(
            src,
            "    {h} = {h} + bsig1({e}) + ch({e}, {f}, {g}) + 0x{k:08x}u + w{w}; {d} = {d} + {h}; \
             {h} = {h} + bsig0({a}) + maj({a}, {b}, {c});"
        );
        regs = [h, a, b, c, d, e, f, g];
    }
    let [a, b, c, d, e, f, g, h] = regs;
    let _ = writeln!(
        src,
        "    return array<u32, 8>(state[0] + {a}, state[1] + {b}, state[2] + {c}, state[3] + {d}, \
         state[4] + {e}, state[5] + {f}, state[6] + {g}, state[7] + {h});\n}}"
    );
    src
}

/// `fn sha1_compress(state: array<u32, 5>, block: array<u32, 16>) -> array<u32, 5>`, unrolled.
fn sha1_compress() -> String {
    let mut src = String::from(
        "fn sha1_compress(state: array<u32, 5>, block: array<u32, 16>) -> array<u32, 5> {\n",
    );
    for i in 0..16 {
        let _ = writeln!(src, "    var w{i} = block[{i}];");
    }
    let mut regs = ["a", "b", "c", "d", "e"];
    for (i, reg) in regs.iter().enumerate() {
        let _ = writeln!(src, "    var {reg} = state[{i}];");
    }
    for round in 0..80 {
        let w = round % 16;
        if round >= 16 {
            let _ = writeln!(
                src,
                "    w{w} = rotl(w{} ^ w{} ^ w{} ^ w{w}, 1u);",
                (round + 13) % 16,
                (round + 8) % 16,
                (round + 2) % 16
            );
        }
        let [a, b, c, d, e] = regs;
        let (f, k) = match round / 20 {
            0 => (format!("({d} ^ ({b} & ({c} ^ {d})))"), 0x5a82_7999u32),
            1 => (format!("({b} ^ {c} ^ {d})"), 0x6ed9_eba1),
            2 => (format!("(({b} & {c}) | ({d} & ({b} | {c})))"), 0x8f1b_bcdc),
            _ => (format!("({b} ^ {c} ^ {d})"), 0xca62_c1d6),
        };
        let _ = writeln!(
            src,
            "    {e} = {e} + rotl({a}, 5u) + {f} + 0x{k:08x}u + w{w}; {b} = rotl({b}, 30u);"
        );
        regs = [e, a, b, c, d];
    }
    let [a, b, c, d, e] = regs;
    let _ = writeln!(
        src,
        "    return array<u32, 5>(state[0] + {a}, state[1] + {b}, state[2] + {c}, state[3] + {d}, \
         state[4] + {e});\n}}"
    );
    src
}

/// The full source of a kernel: the shared helpers, the compression functions, the kernel.
#[must_use]
pub fn kernel_source(kernel: &str) -> String {
    let mut src = String::from(PRELUDE);
    src.push_str(&sha256_compress());
    src.push_str(&sha1_compress());
    src.push_str(kernel);
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_validates_as_wgsl() {
        for id in crate::hash::gpu::KernelId::ALL {
            let name = id.name();
            let src = id.source();
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }

    #[test]
    fn sha256_constants_are_the_cube_roots_of_primes() {
        let primes = (2u32..).filter(|n| (2..*n).all(|d| n % d != 0));
        for (k, p) in SHA256_K.iter().zip(primes) {
            let frac = f64::from(p).cbrt().fract();
            // 32 fractional bits; f64 has enough precision for the first 32 of them.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let expected = (frac * 4_294_967_296.0) as u32;
            assert_eq!(*k, expected, "K for prime {p}");
        }
    }
}
