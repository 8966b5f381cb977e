// BitTorrent v2 merkle parents: out[i] = SHA-256(left_i || right_i), two compressions each
// (the 64-byte pair, then the constant padding block).

struct PairParams {
    // x: pairs in this dispatch.
    sizes: vec4<u32>,
}

@group(0) @binding(0) var<uniform> params: PairParams;
// Pairs of 32-byte nodes as loaded from memory, 16 words per pair.
@group(0) @binding(1) var<storage, read> nodes: array<u32>;
// Parents in the same byte layout, 8 words each.
@group(0) @binding(2) var<storage, read_write> parents: array<u32>;

const SHA256_IV = array<u32, 8>(0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u);

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let pair = gid.x + gid.y * groups.x * 64u;
    if pair >= params.sizes.x {
        return;
    }
    let at = pair * 16u;
    let block = array<u32, 16>(
        bswap(nodes[at]), bswap(nodes[at + 1u]), bswap(nodes[at + 2u]), bswap(nodes[at + 3u]),
        bswap(nodes[at + 4u]), bswap(nodes[at + 5u]), bswap(nodes[at + 6u]), bswap(nodes[at + 7u]),
        bswap(nodes[at + 8u]), bswap(nodes[at + 9u]), bswap(nodes[at + 10u]), bswap(nodes[at + 11u]),
        bswap(nodes[at + 12u]), bswap(nodes[at + 13u]), bswap(nodes[at + 14u]), bswap(nodes[at + 15u]));
    let s = sha256_compress(sha256_compress(SHA256_IV, block), array<u32, 16>(
        0x80000000u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 512u));
    let out = pair * 8u;
    for (var i = 0u; i < 8u; i++) {
        parents[out + i] = bswap(s[i]);
    }
}
