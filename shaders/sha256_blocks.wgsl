// SHA256 compression of whole 64-byte blocks, one message per invocation ("lane"), with the
// hash state carried in `states` across dispatches: the host pads each message's last chunk,
// so arbitrarily long pieces hash in bounded dispatches.

struct BlockParams {
    // x: lanes in this dispatch.
    sizes: vec4<u32>,
}

@group(0) @binding(0) var<uniform> params: BlockParams;
// Per lane: (first word of its chunk in `data`, number of 64-byte blocks).
@group(0) @binding(1) var<storage, read> lanes: array<vec2<u32>>;
// Message bytes as loaded from memory (little-endian words); SHA wants big-endian.
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read_write> states: array<u32>;

fn load_block(at: u32) -> array<u32, 16> {
    return array<u32, 16>(
        bswap(data[at]), bswap(data[at + 1u]), bswap(data[at + 2u]), bswap(data[at + 3u]),
        bswap(data[at + 4u]), bswap(data[at + 5u]), bswap(data[at + 6u]), bswap(data[at + 7u]),
        bswap(data[at + 8u]), bswap(data[at + 9u]), bswap(data[at + 10u]), bswap(data[at + 11u]),
        bswap(data[at + 12u]), bswap(data[at + 13u]), bswap(data[at + 14u]), bswap(data[at + 15u]));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let lane = gid.x + gid.y * groups.x * 64u;
    if lane >= params.sizes.x {
        return;
    }
    let chunk = lanes[lane];
    let base = lane * 8u;
    var s = array<u32, 8>(states[base + 0u], states[base + 1u], states[base + 2u], states[base + 3u], states[base + 4u], states[base + 5u], states[base + 6u], states[base + 7u]);
    for (var block = 0u; block < chunk.y; block++) {
        s = sha256_compress(s, load_block(chunk.x + block * 16u));
    }
    states[base + 0u] = s[0];
    states[base + 1u] = s[1];
    states[base + 2u] = s[2];
    states[base + 3u] = s[3];
    states[base + 4u] = s[4];
    states[base + 5u] = s[5];
    states[base + 6u] = s[6];
    states[base + 7u] = s[7];
}
