// sha256d nonce search over one block header: the CPU compressed the header's first 64 bytes
// into `midstate`; each invocation hashes `nonces_per_invocation` consecutive nonces and appends
// every nonce whose hash (a little-endian 256-bit number) is <= target through an atomic counter.

struct ScanParams {
    midstate: array<vec4<u32>, 2>,
    // xyz: header bytes 64..76 as big-endian words; w: first nonce of this dispatch.
    tail: vec4<u32>,
    // Little-endian 32-bit words, [1].w most significant.
    target_words: array<vec4<u32>, 2>,
    // x: nonces in this dispatch, y: nonces per invocation, z: capacity of `found.nonces`.
    sizes: vec4<u32>,
}

struct Found {
    count: atomic<u32>,
    nonces: array<u32>,
}

@group(0) @binding(0) var<uniform> params: ScanParams;
@group(0) @binding(1) var<storage, read_write> found: Found;

const SHA256_IV = array<u32, 8>(0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u);

// The hash's little-endian words are bswap(h[0]) (least significant) .. bswap(h[7]) (most);
// compare all eight, least significant first, so the most significant decides.
fn meets_target(h: array<u32, 8>) -> bool {
    let t0 = params.target_words[0];
    let t1 = params.target_words[1];
    var le = bswap(h[0]) <= t0.x;
    le = bswap(h[1]) < t0.y || (bswap(h[1]) == t0.y && le);
    le = bswap(h[2]) < t0.z || (bswap(h[2]) == t0.z && le);
    le = bswap(h[3]) < t0.w || (bswap(h[3]) == t0.w && le);
    le = bswap(h[4]) < t1.x || (bswap(h[4]) == t1.x && le);
    le = bswap(h[5]) < t1.y || (bswap(h[5]) == t1.y && le);
    le = bswap(h[6]) < t1.z || (bswap(h[6]) == t1.z && le);
    le = bswap(h[7]) < t1.w || (bswap(h[7]) == t1.w && le);
    return le;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let invocation = gid.x + gid.y * groups.x * 64u;
    let per_invocation = params.sizes.y;
    let midstate = array<u32, 8>(params.midstate[0].x, params.midstate[0].y,
                                 params.midstate[0].z, params.midstate[0].w,
                                 params.midstate[1].x, params.midstate[1].y,
                                 params.midstate[1].z, params.midstate[1].w);
    let top_target = params.target_words[1].w;
    for (var k = 0u; k < per_invocation; k++) {
        let index = invocation * per_invocation + k;
        if index >= params.sizes.x {
            break;
        }
        let nonce = params.tail.w + index;
        let first = sha256_compress(midstate, array<u32, 16>(
            params.tail.x, params.tail.y, params.tail.z, bswap(nonce),
            0x80000000u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 640u));
        let second = sha256_compress(SHA256_IV, array<u32, 16>(
            first[0], first[1], first[2], first[3], first[4], first[5], first[6], first[7],
            0x80000000u, 0u, 0u, 0u, 0u, 0u, 0u, 256u));
        // Early rejection on the most significant word; the full compare only for candidates.
        if bswap(second[7]) <= top_target && meets_target(second) {
            let slot = atomicAdd(&found.count, 1u);
            if slot < params.sizes.z {
                found.nonces[slot] = nonce;
            }
        }
    }
}
