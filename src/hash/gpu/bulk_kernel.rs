//! Generates the one bulk-hashing kernel, for SHA-1 or SHA-256 (they differ only in state
//! width, initial value and compression function). Each invocation ("lane") hashes one slice of
//! one message: it starts from the initial value or from the state carried in `states`, and on
//! its message's last slice pads in registers, so the host uploads raw bytes only and can read
//! files straight into the upload buffer.
//!
//! Loads are coalesced: for every block step the 64 lanes of a workgroup load their 64-byte
//! blocks together, 16 adjacent invocations reading one block's 16 adjacent words, into
//! workgroup memory; each lane then compresses its own block from there.

use std::fmt::Write as _;

use crate::hash::bulk::BlockAlgo;

/// Flags of a lane: its slice is the message's first (start from the IV) and/or last (pad).
pub const FIRST: u32 = 1;
pub const FINAL: u32 = 2;

/// Mirrors `Lane` in the generated kernel: one slice of one message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LaneSpec {
    /// First 32-bit word of the slice in the data buffer.
    pub word: u32,
    /// Bytes of the slice; all but the message's last slice are whole 64-byte blocks.
    pub bytes: u32,
    /// [`FIRST`] | [`FINAL`].
    pub flags: u32,
    /// Where the lane's state lives in `states` (in states, not words).
    pub slot: u32,
    /// The whole message's length in bytes (low, high word): the padding needs it.
    pub length_lo: u32,
    pub length_hi: u32,
    pub reserved: [u32; 2],
}

/// Mirrors `Params`: lanes in this dispatch and the most whole blocks any of them has.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BulkParams {
    pub lanes: u32,
    pub max_blocks: u32,
    pub reserved: [u32; 2],
}

fn iv(algo: BlockAlgo) -> String {
    let words: Vec<String> = algo.iv().iter().map(|w| format!("0x{w:08x}u")).collect();
    format!("array<u32, {}>({})", words.len(), words.join(", "))
}

/// How lanes load their blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loads {
    /// The workgroup loads its lanes' blocks together through workgroup memory, adjacent
    /// invocations reading adjacent words: what a real GPU's memory system wants.
    Coalesced,
    /// Each lane reads its own blocks: for CPU rasterizers such as lavapipe, where the
    /// barriers cost more than caches lose to strided reads.
    Direct,
}

/// The kernel body (joined with the generated compression functions by `kernel_source`).
#[must_use]
pub fn source(algo: BlockAlgo, loads: Loads) -> String {
    let words = algo.state_words();
    let compress = match algo {
        BlockAlgo::Sha1 => "sha1_compress",
        BlockAlgo::Sha256 => "sha256_compress",
    };
    let stride = 17; // one word of padding per lane: the 16-word rows fall on distinct banks
    let mut src = String::new();
    let _ = write!(
        src,
        "
struct Lane {{
    word: u32,
    bytes: u32,
    flags: u32,
    slot: u32,
    length_lo: u32,
    length_hi: u32,
    reserved0: u32,
    reserved1: u32,
}}

struct Params {{
    lanes: u32,
    max_blocks: u32,
    reserved0: u32,
    reserved1: u32,
}}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lanes: array<Lane>;
// Message bytes as loaded from memory (little-endian words); SHA wants big-endian.
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read_write> states: array<u32>;

var<workgroup> tile: array<u32, {tile}>;
var<workgroup> tile_word: array<u32, 64>;
var<workgroup> tile_blocks: array<u32, 64>;

// Word `i` of the message's final partial block: `rest` bytes remain after the whole blocks,
// the 0x80 marker follows them and zeros fill up to the length.
fn tail_word(at: u32, i: u32, rest: u32) -> u32 {{
    let full = rest / 4u;
    if i < full {{
        return bswap(data[at + i]);
    }}
    if i == full {{
        let part = rest % 4u;
        if part == 0u {{
            return 0x80000000u;
        }}
        let keep = 0xffffffffu << (32u - 8u * part);
        return (bswap(data[at + i]) & keep) | (0x80000000u >> (8u * part));
    }}
    return 0u;
}}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) local: u32,
        @builtin(workgroup_id) group: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {{
    let lane = (group.x + group.y * groups.x) * 64u + local;
    let live = lane < params.lanes;
    var spec = Lane(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    if live {{
        spec = lanes[lane];
    }}
    let blocks = spec.bytes / 64u;
    tile_word[local] = spec.word;
    tile_blocks[local] = blocks;
    let base = spec.slot * {words}u;
    var s = {iv};
    if live && (spec.flags & 1u) == 0u {{
",
        tile = 64 * stride,
        iv = iv(algo),
    );
    for i in 0..words {
        let _ = writeln!(src, "        s[{i}] = states[base + {i}u];");
    }
    if loads == Loads::Coalesced {
        coalesced_loop(&mut src, compress, stride);
    } else {
        let words: Vec<String> = (0..16).map(|i| format!("bswap(data[at + {i}u])")).collect();
        let _ = write!(
            src,
            "    }}
    for (var step = 0u; step < blocks; step++) {{
        let at = spec.word + step * 16u;
        s = {compress}(s, array<u32, 16>({}));
    }}
",
            words.join(", ")
        );
    }
    let _ = write!(
        src,
        "    if !live {{
        return;
    }}
    if (spec.flags & 2u) != 0u {{
        let rest = spec.bytes % 64u;
        let at = spec.word + blocks * 16u;
        let bits_lo = spec.length_lo << 3u;
        let bits_hi = (spec.length_hi << 3u) | (spec.length_lo >> 29u);
        var last = array<u32, 16>("
    );
    let tail: Vec<String> = (0..16)
        .map(|i| format!("tail_word(at, {i}u, rest)"))
        .collect();
    let _ = write!(
        src,
        "{});
        if rest < 56u {{
            last[14] = bits_hi;
            last[15] = bits_lo;
            s = {compress}(s, last);
        }} else {{
            s = {compress}(s, last);
            s = {compress}(s, array<u32, 16>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, bits_hi, bits_lo));
        }}
    }}
",
        tail.join(", ")
    );
    for i in 0..words {
        let _ = writeln!(src, "    states[base + {i}u] = s[{i}];");
    }
    src.push_str("}\n");
    if loads == Loads::Direct {
        // No workgroup memory: drop the tile and its bookkeeping.
        src = src
            .lines()
            .filter(|line| !line.contains("tile"))
            .map(|line| format!("{line}\n"))
            .collect();
    }
    src
}

/// The block loop of [`Loads::Coalesced`]: per step, invocation `local` loads word
/// `local % 16` of the blocks of lanes `local / 16`, `+ 4`, ... `+ 60` into the tile, then each
/// lane compresses its own row. The loop bound is uniform, so every invocation reaches every
/// barrier.
fn coalesced_loop(src: &mut String, compress: &str, stride: usize) {
    let _ = write!(
        src,
        "    }}
    let row = local / 16u;
    let column = local % 16u;
    for (var step = 0u; step < params.max_blocks; step++) {{
        workgroupBarrier();
"
    );
    for j in 0..16 {
        let _ = writeln!(
            src,
            "        {{ let l = {j4}u + row; if step < tile_blocks[l] {{ tile[l * {stride}u + column] = \
             data[tile_word[l] + step * 16u + column]; }} }}",
            j4 = j * 4,
        );
    }
    let loads: Vec<String> = (0..16).map(|i| format!("bswap(tile[t + {i}u])")).collect();
    let _ = write!(
        src,
        "        workgroupBarrier();
        if step < blocks {{
            let t = local * {stride}u;
            s = {compress}(s, array<u32, 16>({}));
        }}
    }}
",
        loads.join(", ")
    );
}
